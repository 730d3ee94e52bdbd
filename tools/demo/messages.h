// The demo's side channel between prefill and decode.
//
// A serving engine's scheduler tells decode where a finished prefill left
// a request's KV cache (cache id and block numbers) and hears back when
// decode no longer needs them. The library does not carry this; the demo
// uses one text line per message over a pipe:
//   prefill -> decode: "listening <port> <prefault seconds>", "ready <request> <cache id> <block>...",
//                      "error <text>", "bye <fill seconds> <filled bytes>"
//   decode -> prefill: "done <request>", "quit"
#ifndef LLM_DATADIST_TOOLS_DEMO_MESSAGES_H_
#define LLM_DATADIST_TOOLS_DEMO_MESSAGES_H_

#include <cstdint>
#include <string>
#include <vector>

namespace lldd_demo {

struct ReadyMessage {
  uint32_t request = 0;
  int64_t cache_id = -1;
  std::vector<uint64_t> blocks;
};

std::string FormatReady(const ReadyMessage& m);
bool ParseReady(const std::string& line, ReadyMessage* m);

// The first word of a line, and the rest after one space.
std::string Verb(const std::string& line);
std::string Rest(const std::string& line);

}  // namespace lldd_demo

#endif  // LLM_DATADIST_TOOLS_DEMO_MESSAGES_H_
