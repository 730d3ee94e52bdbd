// The calls that move bytes: Pull/Push (remote) and Copy (local).
#include <chrono>
#include <cstring>

#include "engine/engine.h"
#include "engine/ops_job.h"

namespace lldd {
namespace {

using llm_datadist::KvCacheExtParam;

bool IsDefaultExt(const KvCacheExtParam& ext) {
  return ext.src_layer_range == std::make_pair(-1, -1) && ext.dst_layer_range == std::make_pair(-1, -1) &&
         ext.tensor_num_per_layer == 2;
}

// Tensor pairs for a transfer: all tensors index for index when the caller
// left the extension parameters alone, else grouped by layer.
Result PairTensors(const KvCacheExtParam& ext, const CacheLayout& src, const CacheLayout& dst,
                   std::vector<std::pair<uint32_t, uint32_t>>* pairs) {
  if (!IsDefaultExt(ext)) return MapTensors(ext, src, dst, pairs);
  Result r;
  *pairs = AllTensors(src, dst, &r);
  return r;
}

}  // namespace

Result Engine::Transfer(const TransferSpec& spec) {
  const auto start = std::chrono::steady_clock::now();
  auto peer = metrics_.Peer(spec.remote.cluster_id, false);
  metrics_.Begin(peer);
  const char* transport = nullptr;
  uint64_t bytes = 0;
  Result r = TransferOne(spec, &transport, &bytes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.Finish(peer, transport, spec.push ? metrics::kPush : metrics::kPull, bytes, seconds, r.code());
  return r;
}

Result Engine::PlanTransfer(const TransferSpec& spec, PlannedTransfer* planned) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  const uint64_t cluster = spec.remote.cluster_id;
  if (cluster == cluster_id_)
    return Result::ParamInvalid(Msg("cluster id ", cluster, " is this instance's own; use CopyKvCache/CopyKvBlocks"));
  if (spec.blocks) {
    if (spec.remote.batch_index != 0)
      return Result::ParamInvalid(Msg("block transfers need batch_index 0 in the CacheIndex, not ", spec.remote.batch_index));
    if (spec.remote_blocks->empty() || spec.local_blocks->empty())
      return Result::ParamInvalid("block lists must not be empty");
    if (spec.remote_blocks->size() != spec.local_blocks->size())
      return Result::ParamInvalid(Msg("block lists differ in length: ", spec.push ? spec.local_blocks->size() : spec.remote_blocks->size(),
                                      " source blocks, ", spec.push ? spec.remote_blocks->size() : spec.local_blocks->size(),
                                      " destination blocks"));
  } else if (spec.push && spec.size != -1) {
    return Result::ParamInvalid(Msg("PushKvCache accepts only size -1, not ", spec.size));
  }
  auto local = caches_.Find(spec.local_cache_id);
  if (!local) return Result::CacheNotExist(Msg("local cache ", spec.local_cache_id, " does not exist"));
  LinkPtr link;
  LDD_RETURN_IF_ERROR(FindLink(cluster, &link));

  planned->deadline = Deadline::AfterMillis(options_.sync_wait_ms);
  const Deadline deadline = planned->deadline;
  RemoteDesc remote;
  Result r = link->GetRemoteCache(spec.remote.cache_id, deadline, &remote);
  if (!r.ok()) return r.WithContext(Msg("cache ", spec.remote.cache_id, " of cluster ", cluster));
  CacheLayout remote_layout;
  if (!ComputeLayout(remote.num_tensors, remote.data_type, remote.shape, &remote_layout).ok() ||
      remote_layout.tensor_bytes != remote.tensor_bytes || remote.region_ids.size() != remote.num_tensors)
    return Result::LinkFailed(Msg("cluster ", cluster, " described cache ", spec.remote.cache_id, " inconsistently"));

  const CacheLayout& src = spec.push ? local->layout : remote_layout;
  const CacheLayout& dst = spec.push ? remote_layout : local->layout;
  std::vector<std::pair<uint32_t, uint32_t>> pairs;
  LDD_RETURN_IF_ERROR(PairTensors(spec.ext, src, dst, &pairs));
  std::vector<CopyRange> ranges;
  if (spec.blocks) {
    const auto& src_blocks = spec.push ? *spec.local_blocks : *spec.remote_blocks;
    const auto& dst_blocks = spec.push ? *spec.remote_blocks : *spec.local_blocks;
    LDD_RETURN_IF_ERROR(PlanBlocks(src, dst, src_blocks, dst_blocks, pairs, &ranges));
  } else {
    uint64_t src_row = spec.push ? spec.local_batch : spec.remote.batch_index;
    uint64_t dst_row = spec.push ? spec.remote.batch_index : spec.local_batch;
    LDD_RETURN_IF_ERROR(PlanRow(src, dst, src_row, dst_row, 0, spec.size, pairs, &ranges));
  }

  std::string why;
  Endpoint* path = link->PathFor(local->kind, remote.memory_kind, &why);
  if (path == nullptr) return Result::FeatureNotEnabled(why);
  planned->transport = path->name();
  planned->link = link;
  OpsTransfer& t = planned->ops;
  t.remote_cluster_id = cluster;
  t.push = spec.push;
  t.local_kind = local->kind;
  t.remote_kind = remote.memory_kind;
  t.local_region_ids = local->region_ids;
  t.remote_region_ids = remote.region_ids;
  t.ops.reserve(ranges.size());
  for (const CopyRange& c : ranges) {
    if (spec.push)
      t.ops.push_back({reinterpret_cast<uint8_t*>(local->addrs[c.src_tensor]) + c.src_offset,
                       remote.region_ids[c.dst_tensor], c.dst_offset, c.length});
    else
      t.ops.push_back({reinterpret_cast<uint8_t*>(local->addrs[c.dst_tensor]) + c.dst_offset,
                       remote.region_ids[c.src_tensor], c.src_offset, c.length});
  }
  return Result::Ok();
}

Result Engine::TransferOne(const TransferSpec& spec, const char** transport, uint64_t* bytes) {
  PlannedTransfer planned;
  LDD_RETURN_IF_ERROR(PlanTransfer(spec, &planned));
  *transport = planned.transport;
  for (const IoOp& op : planned.ops.ops) *bytes += op.length;
  // A request of the engine's queue, run on this thread; the link is the
  // join key, so it joins only transfers to the same peer of this front end.
  const bool push = spec.push;
  Result r = transfers_.RunNow(spec.remote.cluster_id, planned.deadline,
                               std::make_shared<OpsJob>(planned.link.get(), push, OpsJob::Groups{std::move(planned.ops)},
                                                        ops_runner_));
  if (r.code() == llm_datadist::LLM_KV_CACHE_NOT_EXIST) planned.link->ForgetRemoteCache(spec.remote.cache_id);
  return r.WithContext(Msg(push ? "push to" : "pull from", " cluster ", spec.remote.cluster_id));
}

Result Engine::TransferOps(const OpsTransfer& t, Deadline deadline) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  LinkPtr link;
  LDD_RETURN_IF_ERROR(FindLink(t.remote_cluster_id, &link));
  std::string why;
  Endpoint* path = link->PathFor(t.local_kind, t.remote_kind, &why);
  if (path == nullptr) return Result::FeatureNotEnabled(why);
  LDD_RETURN_IF_ERROR(path->Prepare(t.remote_region_ids, deadline));
  auto local_lease = std::make_shared<RegionLease>();  // a stuck GPU copy may keep it
  LDD_RETURN_IF_ERROR(regions_.Acquire(t.local_region_ids, local_lease.get()));
  Result r = t.push ? path->WriteHolding(t.ops, deadline, local_lease) : path->ReadHolding(t.ops, deadline, local_lease);
  if (!r.ok() && r.code() != llm_datadist::LLM_TIMEOUT) {
    Result usable = link->CheckUsable();
    if (!usable.ok()) return usable;
  }
  return r;
}

metrics::MeterSpec Engine::MeterCall(uint64_t remote_cluster_id, const std::vector<OpsTransfer>& groups) {
  uint64_t bytes = 0;
  for (const OpsTransfer& t : groups)
    for (const IoOp& op : t.ops) bytes += op.length;
  const bool push = !groups.empty() && groups[0].push;
  if (groups.empty()) return {&metrics_, remote_cluster_id, nullptr, push ? metrics::kPush : metrics::kPull, bytes};
  return MeterCall(remote_cluster_id, push, groups[0].local_kind, groups[0].remote_kind, bytes);
}

metrics::MeterSpec Engine::MeterCall(uint64_t remote_cluster_id, bool push, uint32_t local_kind, uint32_t remote_kind,
                                     uint64_t bytes) {
  // The data path's name, as last found by this thread for the same peer
  // and memory kinds while the links stayed as they are: a caller
  // streaming requests then takes no lock here (the links' lock is one
  // the workers take per transfer; sharing it costs a cache line's trip
  // between cores per request).
  struct Known {
    uint64_t instance = 0;
    uint64_t version = 0;
    uint64_t cluster = 0;
    uint32_t local_kind = 0;
    uint32_t remote_kind = 0;
    const char* transport = nullptr;
  };
  thread_local Known known;
  const uint64_t version = links_version_.load(std::memory_order_acquire);
  if (known.transport == nullptr || known.instance != instance_id_ || known.version != version ||
      known.cluster != remote_cluster_id || known.local_kind != local_kind || known.remote_kind != remote_kind) {
    const char* transport = nullptr;
    LinkPtr link;
    std::string why;
    if (FindLink(remote_cluster_id, &link).ok())
      if (Endpoint* path = link->PathFor(local_kind, remote_kind, &why)) transport = path->name();
    known = {instance_id_, version, remote_cluster_id, local_kind, remote_kind, transport};
  }
  return {&metrics_, remote_cluster_id, known.transport, push ? metrics::kPush : metrics::kPull, bytes};
}

Result Engine::CopyLocal(const LocalCache& src, const LocalCache& dst, const std::vector<CopyRange>& ranges) {
  RegionLease src_lease;
  RegionLease dst_lease;
  LDD_RETURN_IF_ERROR(regions_.Acquire(src.region_ids, &src_lease));
  LDD_RETURN_IF_ERROR(regions_.Acquire(dst.region_ids, &dst_lease));
  for (const CopyRange& c : ranges) {
    // memmove: source and destination may be the same cache.
    std::memmove(reinterpret_cast<uint8_t*>(dst.addrs[c.dst_tensor]) + c.dst_offset,
                 reinterpret_cast<const uint8_t*>(src.addrs[c.src_tensor]) + c.src_offset, c.length);
  }
  return Result::Ok();
}

Result Engine::CopyKvCache(const llm_datadist::Cache& src_cache, const llm_datadist::Cache& dst_cache,
                           uint32_t src_batch, uint32_t dst_batch, uint64_t offset, int64_t size) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  auto src = caches_.Find(src_cache.cache_id);
  if (!src) return Result::CacheNotExist(Msg("source cache ", src_cache.cache_id, " does not exist"));
  auto dst = caches_.Find(dst_cache.cache_id);
  if (!dst) return Result::CacheNotExist(Msg("destination cache ", dst_cache.cache_id, " does not exist"));
  Result r;
  auto pairs = AllTensors(src->layout, dst->layout, &r);
  LDD_RETURN_IF_ERROR(r);
  std::vector<CopyRange> ranges;
  LDD_RETURN_IF_ERROR(PlanRow(src->layout, dst->layout, src_batch, dst_batch, offset, size, pairs, &ranges));
  return CopyLocal(*src, *dst, ranges);
}

Result Engine::CopyKvBlocks(const llm_datadist::Cache& src_cache, const llm_datadist::Cache& dst_cache,
                            const std::vector<uint64_t>& src_blocks,
                            const std::vector<std::vector<uint64_t>>& dst_lists) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (dst_lists.empty()) return Result::ParamInvalid("dst_blocks_list must not be empty");
  auto src = caches_.Find(src_cache.cache_id);
  if (!src) return Result::CacheNotExist(Msg("source cache ", src_cache.cache_id, " does not exist"));
  auto dst = caches_.Find(dst_cache.cache_id);
  if (!dst) return Result::CacheNotExist(Msg("destination cache ", dst_cache.cache_id, " does not exist"));
  Result r;
  auto pairs = AllTensors(src->layout, dst->layout, &r);
  LDD_RETURN_IF_ERROR(r);
  // Every target is validated before the first byte is copied.
  std::vector<CopyRange> all;
  for (size_t i = 0; i < dst_lists.size(); ++i) {
    std::vector<CopyRange> ranges;
    LDD_RETURN_IF_ERROR(
        PlanBlocks(src->layout, dst->layout, src_blocks, dst_lists[i], pairs, &ranges).WithContext(Msg("dst_blocks_list[", i, "]")));
    all.insert(all.end(), ranges.begin(), ranges.end());
  }
  return CopyLocal(*src, *dst, all);
}

}  // namespace lldd
