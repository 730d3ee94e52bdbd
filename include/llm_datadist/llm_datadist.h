// llm-datadist: moves LLM KV caches between prefill and decode processes.
//
// This header is the LLM-DataDist API (Huawei CANN's KV-cache transfer
// interface) on commodity hardware. Code written against the original
// compiles against it unchanged.
//
// Thread safety: all methods of one LlmDataDist may be called from several
// threads at once, with one exception: Initialize, SetRole and Finalize must
// not race each other (in-flight transfers are fine: Finalize makes them
// return an error). The last-error message is per thread.
//
// Extensions of ours live inside the class (static or member functions) so
// that no free name of ours can clash with a user's own helpers written
// next to `using namespace llm_datadist;`.
#ifndef LLM_DATADIST_LLM_DATADIST_H_
#define LLM_DATADIST_LLM_DATADIST_H_

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "llm_datadist/ge_types.h"
#include "llm_datadist/llm_error_codes.h"
#include "llm_datadist/llm_types.h"

namespace llm_datadist {

class LlmDataDist {
 public:
  LlmDataDist(uint64_t cluster_id, LlmRole role);
  ~LlmDataDist();
  LlmDataDist(const LlmDataDist&) = delete;
  LlmDataDist& operator=(const LlmDataDist&) = delete;

  Status Initialize(const std::map<AscendString, AscendString>& options);
  void Finalize();
  Status SetRole(LlmRole role, const std::map<AscendString, AscendString>& options = {});

  Status LinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                         int32_t timeout_in_millis = 1000);
  Status UnlinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                           int32_t timeout_in_millis = 1000, bool force_flag = false);

  Status AllocateCache(const CacheDesc& cache_desc, Cache& cache);
  Status DeallocateCache(int64_t cache_id);
  Status RegisterKvCache(const CacheDesc& cache_desc, const std::vector<uint64_t>& addrs,
                         const RegisterCfg& cfg, int64_t& cache_id);
  Status UnregisterKvCache(int64_t cache_id);

  Status PullKvCache(const CacheIndex& src_cache_index, const Cache& dst_cache, uint32_t batch_index = 0U,
                     int64_t size = -1, const KvCacheExtParam& ext_param = {});
  Status PullKvBlocks(const CacheIndex& src_cache_index, const Cache& dst_cache,
                      const std::vector<uint64_t>& src_blocks, const std::vector<uint64_t>& dst_blocks,
                      const KvCacheExtParam& ext_param = {});
  Status PushKvCache(const Cache& src_cache, const CacheIndex& dst_cache_index, uint32_t src_batch_index = 0U,
                     int64_t size = -1, const KvCacheExtParam& ext_param = {});
  Status PushKvBlocks(const Cache& src_cache, const CacheIndex& dst_cache_index,
                      const std::vector<uint64_t>& src_blocks, const std::vector<uint64_t>& dst_blocks,
                      const KvCacheExtParam& ext_param = {});
  Status CopyKvCache(const Cache& src_cache, const Cache& dst_cache, uint32_t src_batch_index = 0U,
                     uint32_t dst_batch_index = 0U, uint64_t offset = 0U, int64_t size = -1);
  Status CopyKvBlocks(const Cache& src_cache, const Cache& dst_cache, const std::vector<uint64_t>& src_blocks,
                      const std::vector<std::vector<uint64_t>>& dst_blocks_list);

  // --- Extensions (not in the original API) ---

  // The reason for the last failed call on this thread ("" if none failed).
  static const char* GetLastErrorMessage();
  // The name of a status code ("LLM_TIMEOUT"); "UNKNOWN" for other values.
  static const char* GetStatusName(Status status);
  // The port this instance listens on (useful after listening on port 0);
  // 0 for a client.
  uint16_t GetListenPort() const;
  // The data path a linked cluster uses ("tcp", "shm", ...); "" if not linked.
  const char* GetLinkTransport(uint64_t remote_cluster_id) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llm_datadist

#endif  // LLM_DATADIST_LLM_DATADIST_H_
