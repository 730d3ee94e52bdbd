// The public class: a pimpl over the engine that turns every Result into a
// status code plus the calling thread's last-error message.
#include "llm_datadist/llm_datadist.h"

#include "common/last_error.h"
#include "engine/engine.h"

namespace llm_datadist {

class LlmDataDist::Impl {
 public:
  Impl(uint64_t cluster_id, LlmRole role) : engine(cluster_id, role) {}
  lldd::Engine engine;
};

namespace {
Status Report(const char* api, const lldd::Result& r) { return lldd::ReportResult(api, r); }
}  // namespace

LlmDataDist::LlmDataDist(uint64_t cluster_id, LlmRole role) : impl_(new Impl(cluster_id, role)) {}
LlmDataDist::~LlmDataDist() = default;

Status LlmDataDist::Initialize(const std::map<AscendString, AscendString>& options) {
  return Report("Initialize", impl_->engine.Initialize(options));
}

void LlmDataDist::Finalize() { impl_->engine.Finalize(); }

Status LlmDataDist::SetRole(LlmRole role, const std::map<AscendString, AscendString>& options) {
  return Report("SetRole", impl_->engine.SetRole(role, options));
}

Status LlmDataDist::LinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                                    int32_t timeout_in_millis) {
  return Report("LinkLlmClusters", impl_->engine.Link(clusters, rets, timeout_in_millis));
}

Status LlmDataDist::UnlinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                                      int32_t timeout_in_millis, bool force_flag) {
  return Report("UnlinkLlmClusters", impl_->engine.Unlink(clusters, rets, timeout_in_millis, force_flag));
}

Status LlmDataDist::AllocateCache(const CacheDesc& cache_desc, Cache& cache) {
  return Report("AllocateCache", impl_->engine.AllocateCache(cache_desc, cache));
}

Status LlmDataDist::DeallocateCache(int64_t cache_id) {
  return Report("DeallocateCache", impl_->engine.DeallocateCache(cache_id));
}

Status LlmDataDist::RegisterKvCache(const CacheDesc& cache_desc, const std::vector<uint64_t>& addrs,
                                    const RegisterCfg& cfg, int64_t& cache_id) {
  (void)cfg;  // all reserved bytes: nothing to configure yet
  return Report("RegisterKvCache", impl_->engine.RegisterKvCache(cache_desc, addrs, cache_id));
}

Status LlmDataDist::UnregisterKvCache(int64_t cache_id) {
  return Report("UnregisterKvCache", impl_->engine.UnregisterKvCache(cache_id));
}

Status LlmDataDist::PullKvCache(const CacheIndex& src_cache_index, const Cache& dst_cache, uint32_t batch_index,
                                int64_t size, const KvCacheExtParam& ext_param) {
  lldd::Engine::TransferSpec spec;
  spec.remote = src_cache_index;
  spec.local_cache_id = dst_cache.cache_id;
  spec.local_batch = batch_index;
  spec.size = size;
  spec.ext = ext_param;
  return Report("PullKvCache", impl_->engine.Transfer(spec));
}

Status LlmDataDist::PullKvBlocks(const CacheIndex& src_cache_index, const Cache& dst_cache,
                                 const std::vector<uint64_t>& src_blocks, const std::vector<uint64_t>& dst_blocks,
                                 const KvCacheExtParam& ext_param) {
  lldd::Engine::TransferSpec spec;
  spec.remote = src_cache_index;
  spec.local_cache_id = dst_cache.cache_id;
  spec.blocks = true;
  spec.remote_blocks = &src_blocks;
  spec.local_blocks = &dst_blocks;
  spec.ext = ext_param;
  return Report("PullKvBlocks", impl_->engine.Transfer(spec));
}

Status LlmDataDist::PushKvCache(const Cache& src_cache, const CacheIndex& dst_cache_index, uint32_t src_batch_index,
                                int64_t size, const KvCacheExtParam& ext_param) {
  lldd::Engine::TransferSpec spec;
  spec.push = true;
  spec.remote = dst_cache_index;
  spec.local_cache_id = src_cache.cache_id;
  spec.local_batch = src_batch_index;
  spec.size = size;
  spec.ext = ext_param;
  return Report("PushKvCache", impl_->engine.Transfer(spec));
}

Status LlmDataDist::PushKvBlocks(const Cache& src_cache, const CacheIndex& dst_cache_index,
                                 const std::vector<uint64_t>& src_blocks, const std::vector<uint64_t>& dst_blocks,
                                 const KvCacheExtParam& ext_param) {
  lldd::Engine::TransferSpec spec;
  spec.push = true;
  spec.remote = dst_cache_index;
  spec.local_cache_id = src_cache.cache_id;
  spec.blocks = true;
  spec.remote_blocks = &dst_blocks;
  spec.local_blocks = &src_blocks;
  spec.ext = ext_param;
  return Report("PushKvBlocks", impl_->engine.Transfer(spec));
}

Status LlmDataDist::CopyKvCache(const Cache& src_cache, const Cache& dst_cache, uint32_t src_batch_index,
                                uint32_t dst_batch_index, uint64_t offset, int64_t size) {
  return Report("CopyKvCache",
                impl_->engine.CopyKvCache(src_cache, dst_cache, src_batch_index, dst_batch_index, offset, size));
}

Status LlmDataDist::CopyKvBlocks(const Cache& src_cache, const Cache& dst_cache, const std::vector<uint64_t>& src_blocks,
                                 const std::vector<std::vector<uint64_t>>& dst_blocks_list) {
  return Report("CopyKvBlocks", impl_->engine.CopyKvBlocks(src_cache, dst_cache, src_blocks, dst_blocks_list));
}

const char* LlmDataDist::GetLastErrorMessage() { return lldd::LastErrorMessage().c_str(); }

const char* LlmDataDist::GetStatusName(Status status) { return lldd::StatusName(status); }

uint16_t LlmDataDist::GetListenPort() const { return impl_->engine.listen_port(); }

const char* LlmDataDist::GetLinkTransport(uint64_t remote_cluster_id) const {
  return impl_->engine.LinkTransport(remote_cluster_id);
}

}  // namespace llm_datadist
