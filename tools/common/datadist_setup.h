// Starting, linking and diagnosing llm_datadist instances the way every
// tool needs to, through the public API only.
#ifndef LLM_DATADIST_TOOLS_COMMON_DATADIST_SETUP_H_
#define LLM_DATADIST_TOOLS_COMMON_DATADIST_SETUP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "llm_datadist/llm_datadist.h"

namespace lldd_tools {

struct InstanceConfig {
  std::string listen;         // "ip:port" makes a server; empty: a client
  std::string transport;      // OPTION_TRANSFER_BACKEND; empty: the library's default
  int64_t wait_ms = 0;        // OPTION_SYNC_CACHE_WAIT_TIME; 0: the library's default
  uint32_t tcp_connections = 0;  // 0: the library's default
  std::map<std::string, std::string> extra;  // further options, passed as they are
};

std::map<llm_datadist::AscendString, llm_datadist::AscendString> BuildOptions(const InstanceConfig& config);

// An initialized instance, or null with the reason in *error.
std::unique_ptr<llm_datadist::LlmDataDist> StartInstance(uint64_t cluster_id, llm_datadist::LlmRole role,
                                                         const InstanceConfig& config, std::string* error);

// Links `dd` to the server of `remote_cluster` at host:port; with an empty
// host, by cluster id alone (the instance's llm.Directory resolves it).
bool LinkTo(llm_datadist::LlmDataDist& dd, uint64_t remote_cluster, const std::string& host, uint16_t port,
            int32_t timeout_ms, std::string* error);

// "LLM_PARAM_INVALID (0x5010B005): <this thread's last error message>".
std::string DescribeFailure(llm_datadist::Status status);

bool ParseHostPort(const std::string& text, std::string* host, uint16_t* port);

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_DATADIST_SETUP_H_
