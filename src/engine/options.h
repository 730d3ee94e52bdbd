// Initialize()/SetRole() options, parsed and validated in one place.
//
// Every malformed value is LLM_PARAM_INVALID with a message naming the
// option. Unknown keys are ignored with a warning (the original accepts
// options of other components in the same map).
#ifndef LLM_DATADIST_SRC_ENGINE_OPTIONS_H_
#define LLM_DATADIST_SRC_ENGINE_OPTIONS_H_

#include <cstdint>
#include <map>
#include <string>

#include "common/result.h"
#include "llm_datadist/llm_types.h"

namespace lldd {

using OptionMap = std::map<llm_datadist::AscendString, llm_datadist::AscendString>;

// Extension option keys (ours, not the original's).
constexpr const char kOptionTcpConnections[] = "llm.TcpConnectionsPerLink";
constexpr const char kOptionLinkToken[] = "llm.LinkToken";
constexpr const char kOptionCopyThreads[] = "llm.CopyThreads";

struct EngineOptions {
  bool listen = false;
  std::string listen_host;
  uint16_t listen_port = 0;
  int32_t device_id = -1;
  int64_t sync_wait_ms = 1000;
  bool enable_set_role = false;
  std::string backend = "auto";  // auto | shm | tcp
  uint32_t tcp_connections = 4;
  uint32_t copy_threads = 0;  // same-host copies; 0: one per core, at most 64
  std::string link_token;
  std::string local_device_ip;  // from llm.LocalCommRes, if given
};

Result ParseOptions(const OptionMap& options, EngineOptions* out);
// Only the listen option matters to SetRole().
Result ParseListenOption(const OptionMap& options, EngineOptions* out);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_OPTIONS_H_
