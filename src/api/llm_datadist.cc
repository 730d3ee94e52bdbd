// The public class: a pimpl over the engine that turns every Result into a
// status code plus the calling thread's last-error message.
#include "llm_datadist/llm_datadist.h"

#include <unistd.h>

#include <atomic>
#include <mutex>

#include "api/layerwise_task.h"
#include "common/last_error.h"
#include "engine/engine.h"

namespace llm_datadist {

namespace {
Status Report(const char* api, const lldd::Result& r) { return lldd::ReportResult(api, r); }
}  // namespace

class LlmDataDist::Impl {
 public:
  Impl(uint64_t cluster_id, LlmRole role) : engine(cluster_id, role) {}

  // An initialized engine's threads exist only in the process that
  // initialized it. In a forked child, the copy must not be touched: its
  // locks may be held by threads that are gone, and joining them would
  // never return. So every call there fails, Finalize does nothing, and the
  // destructor leaves the copy alone.
  bool ForkedAway() const {
    const pid_t owner = initialized_in.load();
    return owner != 0 && owner != getpid();
  }

  template <typename Call>
  Status Run(const char* api, Call&& call) {
    if (ForkedAway())
      return Report(
          api, lldd::Result::Failed(lldd::Msg("this LlmDataDist was initialized in process ", initialized_in.load(),
                                              ", before a fork; a forked child must create and initialize its own")));
    return Report(api, call());
  }

  ~Impl() { StopTasks(); }

  // Layer-wise tasks call the public API of their instance: each is
  // stopped and joined before the engine goes (Finalize, destructor).
  void AddTask(std::shared_ptr<LlmDataDist::LayerwiseTask::State> task) {
    std::lock_guard<std::mutex> lock(tasks_mu);
    std::vector<std::shared_ptr<LlmDataDist::LayerwiseTask::State>> running;
    for (auto& t : tasks) {
      std::unique_lock<std::mutex> state_lock(t->mu);
      const bool done = t->done;
      state_lock.unlock();
      if (done) {
        if (t->thread.joinable()) t->thread.join();
      } else {
        running.push_back(std::move(t));
      }
    }
    running.push_back(std::move(task));
    tasks = std::move(running);
  }
  void StopTasks() {
    std::vector<std::shared_ptr<LlmDataDist::LayerwiseTask::State>> all;
    {
      std::lock_guard<std::mutex> lock(tasks_mu);
      all.swap(tasks);
    }
    for (auto& t : all) lldd::StopLayerwise(*t);
  }

  lldd::Engine engine;
  std::atomic<pid_t> initialized_in{0};
  std::mutex tasks_mu;
  std::vector<std::shared_ptr<LlmDataDist::LayerwiseTask::State>> tasks;
};

LlmDataDist::LlmDataDist(uint64_t cluster_id, LlmRole role) : impl_(new Impl(cluster_id, role)) {}

LlmDataDist::~LlmDataDist() {
  if (impl_ && impl_->ForkedAway()) (void)impl_.release();  // the parent's; see Impl::ForkedAway
}

Status LlmDataDist::Initialize(const std::map<AscendString, AscendString>& options) {
  return impl_->Run("Initialize", [&] {
    lldd::Result r = impl_->engine.Initialize(options);
    if (r.ok()) impl_->initialized_in = getpid();
    return r;
  });
}

void LlmDataDist::Finalize() {
  if (impl_->ForkedAway()) return;
  impl_->StopTasks();
  impl_->engine.Finalize();
  impl_->initialized_in = 0;
}

Status LlmDataDist::SetRole(LlmRole role, const std::map<AscendString, AscendString>& options) {
  return impl_->Run("SetRole", [&] { return impl_->engine.SetRole(role, options); });
}

Status LlmDataDist::LinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                                    int32_t timeout_in_millis) {
  return impl_->Run("LinkLlmClusters", [&] { return impl_->engine.Link(clusters, rets, timeout_in_millis); });
}

Status LlmDataDist::UnlinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                                      int32_t timeout_in_millis, bool force_flag) {
  return impl_->Run("UnlinkLlmClusters",
                    [&] { return impl_->engine.Unlink(clusters, rets, timeout_in_millis, force_flag); });
}

Status LlmDataDist::AllocateCache(const CacheDesc& cache_desc, Cache& cache) {
  return impl_->Run("AllocateCache", [&] { return impl_->engine.AllocateCache(cache_desc, cache); });
}

Status LlmDataDist::PushKvCacheLayerwise(const Cache& src_cache, const std::vector<LayerwiseDestination>& destinations,
                                         LayerReadyFn layer_ready, std::shared_ptr<LayerwiseTask>& task,
                                         uint8_t tensor_num_per_layer) {
  return impl_->Run("PushKvCacheLayerwise", [&]() -> lldd::Result {
    CacheDesc desc;
    LDD_RETURN_IF_ERROR(impl_->engine.LocalCacheDesc(src_cache.cache_id, &desc));
    std::shared_ptr<LayerwiseTask::State> state;
    LDD_RETURN_IF_ERROR(lldd::StartLayerwise(this, src_cache.cache_id, desc, destinations, std::move(layer_ready),
                                             tensor_num_per_layer, &state));
    impl_->AddTask(state);
    task = std::make_shared<LayerwiseTask>(std::move(state));
    return lldd::Result::Ok();
  });
}

Status LlmDataDist::RegisterLibraryCache(const CacheDesc& cache_desc, const std::vector<uint64_t>& addrs,
                                         int64_t& cache_id) {
  return impl_->Run("RegisterLibraryCache",
                    [&] { return impl_->engine.RegisterKvCache(cache_desc, addrs, cache_id, true); });
}

Status LlmDataDist::PushKvRanges(const Cache& src_cache, uint64_t remote_cluster_id,
                                 const std::vector<RangeCopy>& ranges) {
  return impl_->Run("PushKvRanges", [&] { return impl_->engine.PushRanges(src_cache.cache_id, remote_cluster_id, ranges); });
}

Status LlmDataDist::GetRemoteCacheDesc(uint64_t remote_cluster_id, int64_t cache_id, CacheDesc& cache_desc) {
  return impl_->Run("GetRemoteCacheDesc",
                    [&] { return impl_->engine.RemoteCacheDesc(remote_cluster_id, cache_id, &cache_desc); });
}

Status LlmDataDist::AllocateLibraryCache(const CacheDesc& cache_desc, Cache& cache) {
  return impl_->Run("AllocateLibraryCache", [&] { return impl_->engine.AllocateCache(cache_desc, cache, true); });
}

Status LlmDataDist::DeallocateCache(int64_t cache_id) {
  return impl_->Run("DeallocateCache", [&] { return impl_->engine.DeallocateCache(cache_id); });
}

Status LlmDataDist::RegisterKvCache(const CacheDesc& cache_desc, const std::vector<uint64_t>& addrs,
                                    const RegisterCfg& cfg, int64_t& cache_id) {
  (void)cfg;  // all reserved bytes: nothing to configure yet
  return impl_->Run("RegisterKvCache", [&] { return impl_->engine.RegisterKvCache(cache_desc, addrs, cache_id); });
}

Status LlmDataDist::UnregisterKvCache(int64_t cache_id) {
  return impl_->Run("UnregisterKvCache", [&] { return impl_->engine.UnregisterKvCache(cache_id); });
}

Status LlmDataDist::PullKvCache(const CacheIndex& src_cache_index, const Cache& dst_cache, uint32_t batch_index,
                                int64_t size, const KvCacheExtParam& ext_param) {
  lldd::Engine::TransferSpec spec;
  spec.remote = src_cache_index;
  spec.local_cache_id = dst_cache.cache_id;
  spec.local_batch = batch_index;
  spec.size = size;
  spec.ext = ext_param;
  return impl_->Run("PullKvCache", [&] { return impl_->engine.Transfer(spec); });
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
  return impl_->Run("PullKvBlocks", [&] { return impl_->engine.Transfer(spec); });
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
  return impl_->Run("PushKvCache", [&] { return impl_->engine.Transfer(spec); });
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
  return impl_->Run("PushKvBlocks", [&] { return impl_->engine.Transfer(spec); });
}

Status LlmDataDist::CopyKvCache(const Cache& src_cache, const Cache& dst_cache, uint32_t src_batch_index,
                                uint32_t dst_batch_index, uint64_t offset, int64_t size) {
  return impl_->Run("CopyKvCache", [&] {
    return impl_->engine.CopyKvCache(src_cache, dst_cache, src_batch_index, dst_batch_index, offset, size);
  });
}

Status LlmDataDist::CopyKvBlocks(const Cache& src_cache, const Cache& dst_cache,
                                 const std::vector<uint64_t>& src_blocks,
                                 const std::vector<std::vector<uint64_t>>& dst_blocks_list) {
  return impl_->Run("CopyKvBlocks",
                    [&] { return impl_->engine.CopyKvBlocks(src_cache, dst_cache, src_blocks, dst_blocks_list); });
}

const char* LlmDataDist::GetLastErrorMessage() { return lldd::LastErrorMessage().c_str(); }

const char* LlmDataDist::GetStatusName(Status status) { return lldd::StatusName(status); }

uint16_t LlmDataDist::GetListenPort() const { return impl_->ForkedAway() ? 0 : impl_->engine.listen_port(); }

const char* LlmDataDist::GetLinkTransport(uint64_t remote_cluster_id) const {
  return impl_->ForkedAway() ? "" : impl_->engine.LinkTransport(remote_cluster_id);
}

LlmDataDist::Stats LlmDataDist::GetStats() const { return impl_->ForkedAway() ? Stats{} : impl_->engine.GetStats(); }

}  // namespace llm_datadist
