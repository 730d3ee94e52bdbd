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
#include "memory/memory_pool.h"
#include "llm_datadist/llm_datadist.h"
#include "llm_datadist/llm_types.h"

namespace lldd {

using OptionMap = std::map<llm_datadist::AscendString, llm_datadist::AscendString>;

// Extension option keys (ours, not the original's): the public constants,
// under the names the engine has always used.
inline constexpr const auto& kOptionTcpConnections = llm_datadist::LlmDataDist::OPTION_TCP_CONNECTIONS_PER_LINK;
inline constexpr const auto& kOptionLinkToken = llm_datadist::LlmDataDist::OPTION_LINK_TOKEN;
inline constexpr const auto& kOptionCopyThreads = llm_datadist::LlmDataDist::OPTION_COPY_THREADS;
inline constexpr const auto& kOptionDirectory = llm_datadist::LlmDataDist::OPTION_DIRECTORY;
inline constexpr const auto& kOptionDirectoryPrefix = llm_datadist::LlmDataDist::OPTION_DIRECTORY_PREFIX;
inline constexpr const auto& kOptionDirectoryTtl = llm_datadist::LlmDataDist::OPTION_DIRECTORY_TTL;
inline constexpr const auto& kOptionMaxLinks = llm_datadist::LlmDataDist::OPTION_MAX_LINKS;
inline constexpr const auto& kOptionMetricsPort = llm_datadist::LlmDataDist::OPTION_METRICS_PORT;
// The vendor's cache-manager pools (its internal key names; the vendor's
// Python LLMConfig.mem_pool_cfg / host_mem_pool_cfg produce them).
inline constexpr const char kOptionMemPoolConfig[] = "llm.MemPoolConfig";
inline constexpr const char kOptionHostMemPoolConfig[] = "llm.HostMemPoolConfig";
// The most llm.MaxLinks accepts (each link costs descriptors and a thread).
constexpr uint32_t kMaxLinksLimit = 65536;

struct EngineOptions {
  bool listen = false;
  std::string listen_host;
  uint16_t listen_port = 0;
  int32_t device_id = -1;
  int64_t sync_wait_ms = 1000;
  bool enable_set_role = false;
  std::string backend = "auto";  // auto, or a registered transport's name
  uint32_t tcp_connections = 0;  // 0: the transport chooses from the cores
  // Threads one same-host copy may use; 0: one per core. The copy pool has
  // min(cores, 64) threads (memory/parallel_copy.cc), which caps any value.
  uint32_t copy_threads = 0;
  std::string link_token;
  // This rank's device_ip from llm.LocalCommRes: links leave from it when
  // ClusterInfo::local_ip_infos names no local address.
  std::string local_device_ip;
  // Discovery (llm.Directory*): "" for none; checked when the directory is made.
  std::string directory;
  std::string directory_prefix = "/llm_datadist/";
  int64_t directory_ttl_s = 5;
  uint32_t max_links = llm_datadist::kMaxClusterNum;
  // llm.MetricsPort: serve Prometheus text there (metrics_port 0: off).
  std::string metrics_host = "0.0.0.0";
  uint16_t metrics_port = 0;
  // AllocateCache carves caches of each placement from its pool when set.
  MemoryPoolConfig device_pool;
  MemoryPoolConfig host_pool;
};

Result ParseOptions(const OptionMap& options, EngineOptions* out);
// Only the listen option matters to SetRole().
Result ParseListenOption(const OptionMap& options, EngineOptions* out);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_OPTIONS_H_
