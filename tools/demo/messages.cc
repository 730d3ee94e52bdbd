#include "demo/messages.h"

#include <sstream>

namespace lldd_demo {

std::string FormatReady(const ReadyMessage& m) {
  std::string out = "ready " + std::to_string(m.request) + " " + std::to_string(m.cache_id);
  out.reserve(out.size() + m.blocks.size() * 6);
  for (uint64_t b : m.blocks) {
    out += ' ';
    out += std::to_string(b);
  }
  return out;
}

bool ParseReady(const std::string& line, ReadyMessage* m) {
  std::istringstream in(line);
  std::string verb;
  if (!(in >> verb >> m->request >> m->cache_id) || verb != "ready") return false;
  m->blocks.clear();
  uint64_t b;
  while (in >> b) m->blocks.push_back(b);
  return in.eof() && !m->blocks.empty();
}

std::string Verb(const std::string& line) { return line.substr(0, line.find(' ')); }

std::string Rest(const std::string& line) {
  size_t sp = line.find(' ');
  return sp == std::string::npos ? "" : line.substr(sp + 1);
}

}  // namespace lldd_demo
