#include "hixl/engine_name.h"

#include <arpa/inet.h>

namespace lldd::hixl_impl {
namespace {

Result Bad(const std::string& text, const std::string& why) {
  return Result::ParamInvalid(Msg("engine name '", text, "': ", why,
                                  " (expected ip, ip:port, [ipv6] or [ipv6]:port)"));
}

bool IsV4(const std::string& h) {
  in_addr a{};
  return inet_pton(AF_INET, h.c_str(), &a) == 1;
}

bool IsV6(const std::string& h) {
  in6_addr a{};
  return inet_pton(AF_INET6, h.c_str(), &a) == 1;
}

}  // namespace

Result ParseEngineName(const std::string& text, EngineName* out) {
  std::string host;
  std::string port;
  bool has_port = false;
  bool v6 = false;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos) return Bad(text, "no closing ']'");
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return Bad(text, "junk after ']'");
      port = text.substr(close + 2);
      has_port = true;
    }
    if (!IsV6(host)) return Bad(text, Msg("'", host, "' is not an IPv6 address"));
    v6 = true;
  } else {
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    if (colon != std::string::npos) {
      port = text.substr(colon + 1);
      has_port = true;
    }
    if (!IsV4(host)) return Bad(text, Msg("'", host, "' is not an IPv4 address (IPv6 goes in brackets)"));
  }
  uint16_t p = 0;
  if (has_port) {
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
      return Bad(text, Msg("'", port, "' is not a port number"));
    const unsigned long v = std::stoul(port);
    if (v > 65535) return Bad(text, Msg("port ", v, " is out of range"));
    p = static_cast<uint16_t>(v);
  }
  out->host = host;
  out->port = p;
  const std::string h = v6 ? "[" + host + "]" : host;
  out->canonical = p != 0 ? Msg(h, ":", p) : h;
  return Result::Ok();
}

uint64_t ClusterIdOf(const std::string& canonical) {
  // FNV-1a: the same in every process and build.
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : canonical) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h == 0 ? 1 : h;
}

}  // namespace lldd::hixl_impl
