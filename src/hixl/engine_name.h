// A HIXL engine's name: "ip:port" (a server, listening on port), "ip" (a
// client only), "[ipv6]:port" or "[ipv6]". Peers name a server exactly as
// it named itself, so the name also gives the engine's cluster id on the
// links below (a stable hash of the canonical name); a client-only engine
// cannot be dialled and gets a random one.
#ifndef LLM_DATADIST_SRC_HIXL_ENGINE_NAME_H_
#define LLM_DATADIST_SRC_HIXL_ENGINE_NAME_H_

#include <cstdint>
#include <string>

#include "common/result.h"

namespace lldd::hixl_impl {

struct EngineName {
  std::string host;       // numeric address, without brackets
  uint16_t port = 0;      // 0: client only
  std::string canonical;  // host:port, [v6]:port, host or [v6]
  bool listens() const { return port != 0; }
};

// PARAM_INVALID naming the text when it is not one of the forms above (a
// port of 0 counts as no port, as the vendor documents).
Result ParseEngineName(const std::string& text, EngineName* out);

// The cluster id a server with this canonical name has (never 0).
uint64_t ClusterIdOf(const std::string& canonical);

}  // namespace lldd::hixl_impl

#endif  // LLM_DATADIST_SRC_HIXL_ENGINE_NAME_H_
