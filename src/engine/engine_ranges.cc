// PushRanges: byte ranges of a local cache written into a linked peer's
// caches, each destination named by (cache, tensor, offset) or by an
// address of the peer's process. Addresses mean nothing here, so the peer
// resolves them against its own caches (front end kAddressFrontEnd) and
// only memory it allocated or registered can be reached: an address
// outside it is refused before any byte moves.
#include <algorithm>
#include <map>

#include "common/wire.h"
#include "engine/engine.h"
#include "engine/ops_job.h"

namespace lldd {
namespace {

using RangeCopy = llm_datadist::LlmDataDist::RangeCopy;

constexpr const char kAddressFrontEnd[] = "lldd.address";
// One control message stays small: the longest list PushRanges sends.
constexpr uint32_t kMaxRanges = 1U << 16;

struct Resolved {
  int64_t cache_id = 0;
  uint32_t tensor = 0;
  uint64_t offset = 0;
};

// A peer's [addr, addr + length) pairs -> (cache, tensor, offset) each.
Result ResolveHere(const CacheRegistry& caches, const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) {
  WireReader r(request);
  const uint32_t n = r.U32();
  if (!r.ok() || n > kMaxRanges) return Result::ParamInvalid("malformed address lookup");
  WireWriter w;
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t addr = r.U64();
    const uint64_t length = r.U64();
    if (!r.ok()) return Result::ParamInvalid("malformed address lookup");
    uint32_t tensor = 0;
    uint64_t offset = 0;
    auto cache = caches.FindByAddress(addr, length, &tensor, &offset);
    if (!cache)
      return Result::ParamInvalid(Msg("destination address ", addr, " (+", length,
                                      " bytes) is not inside a cache the peer allocated or registered"));
    w.I64(cache->id);
    w.U32(tensor);
    w.U64(offset);
  }
  *reply = std::move(w.buffer());
  return Result::Ok();
}

bool Fits(uint64_t offset, uint64_t length, uint64_t size) { return offset <= size && length <= size - offset; }

}  // namespace

void Engine::ServeAddressLookups() {
  SetFrontEndHandler(kAddressFrontEnd, [this](uint64_t, const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) {
    return ResolveHere(caches_, request, reply);
  });
}

Result Engine::RemoteCacheDesc(uint64_t remote_cluster_id, int64_t cache_id, llm_datadist::CacheDesc* desc) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  LinkPtr link;
  LDD_RETURN_IF_ERROR(FindLink(remote_cluster_id, &link));
  RemoteDesc remote;
  Result r = link->GetRemoteCache(cache_id, Deadline::AfterMillis(options_.sync_wait_ms), &remote);
  if (!r.ok()) return r.WithContext(Msg("cache ", cache_id, " of cluster ", remote_cluster_id));
  desc->placement = static_cast<llm_datadist::CachePlacement>(remote.placement);
  desc->num_tensors = remote.num_tensors;
  desc->data_type = static_cast<llm_datadist::DataType>(remote.data_type);
  desc->shape = remote.shape;
  return Result::Ok();
}

Result Engine::PushRanges(int64_t local_cache_id, uint64_t remote_cluster_id, const std::vector<RangeCopy>& ranges) {
  if (ranges.empty() || ranges.size() > kMaxRanges)
    return Result::ParamInvalid(Msg("1 to ", kMaxRanges, " ranges per call, not ", ranges.size()));
  if (remote_cluster_id == cluster_id_)
    return Result::ParamInvalid(Msg("cluster id ", remote_cluster_id, " is this instance's own"));
  auto local = caches_.Find(local_cache_id);
  if (!local) return Result::CacheNotExist(Msg("local cache ", local_cache_id, " does not exist"));
  for (size_t i = 0; i < ranges.size(); ++i) {
    const RangeCopy& c = ranges[i];
    if (c.length == 0 || c.src_tensor >= local->addrs.size() ||
        !Fits(c.src_offset, c.length, local->layout.tensor_bytes))
      return Result::ParamInvalid(Msg("range ", i, ": ", c.length, " bytes at offset ", c.src_offset, " of tensor ",
                                      c.src_tensor, " are not inside local cache ", local_cache_id, " (",
                                      local->addrs.size(), " tensors of ", local->layout.tensor_bytes, " bytes)"));
  }
  const Deadline deadline = Deadline::AfterMillis(options_.sync_wait_ms);

  // Destinations named by address: the peer says where they are.
  std::vector<Resolved> dst(ranges.size());
  WireWriter lookup;
  std::vector<size_t> by_address;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].dst_cache_id > 0) {
      dst[i] = {ranges[i].dst_cache_id, ranges[i].dst_tensor, ranges[i].dst_offset};
    } else {
      by_address.push_back(i);
    }
  }
  if (!by_address.empty()) {
    lookup.U32(static_cast<uint32_t>(by_address.size()));
    for (size_t i : by_address) {
      lookup.U64(ranges[i].dst_offset);
      lookup.U64(ranges[i].length);
    }
    std::vector<uint8_t> reply;
    Result r = CallFrontEnd(remote_cluster_id, kAddressFrontEnd, lookup.buffer(), deadline, &reply);
    if (!r.ok()) return r.WithContext(Msg("cluster ", remote_cluster_id));
    WireReader rd(reply);
    for (size_t i : by_address) {
      dst[i].cache_id = rd.I64();
      dst[i].tensor = rd.U32();
      dst[i].offset = rd.U64();
    }
    if (!rd.ok() || !rd.done())
      return Result::LinkFailed(Msg("cluster ", remote_cluster_id, " answered an address lookup malformed"));
  }

  // One one-sided write per destination cache, every range checked first.
  std::map<int64_t, OpsTransfer> writes;
  LinkPtr link;
  {
    std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
    LDD_RETURN_IF_ERROR(CheckInitialized());
    LDD_RETURN_IF_ERROR(FindLink(remote_cluster_id, &link));
    std::map<int64_t, RemoteDesc> remotes;
    for (size_t i = 0; i < ranges.size(); ++i) {
      auto it = remotes.find(dst[i].cache_id);
      if (it == remotes.end()) {
        RemoteDesc desc;
        Result r = link->GetRemoteCache(dst[i].cache_id, deadline, &desc);
        if (!r.ok()) return r.WithContext(Msg("cache ", dst[i].cache_id, " of cluster ", remote_cluster_id));
        it = remotes.emplace(dst[i].cache_id, std::move(desc)).first;
      }
      const RemoteDesc& remote = it->second;
      if (dst[i].tensor >= remote.region_ids.size() || !Fits(dst[i].offset, ranges[i].length, remote.tensor_bytes))
        return Result::ParamInvalid(Msg("range ", i, ": ", ranges[i].length, " bytes at offset ", dst[i].offset,
                                        " of tensor ", dst[i].tensor, " are not inside cache ", dst[i].cache_id,
                                        " of cluster ", remote_cluster_id, " (", remote.region_ids.size(),
                                        " tensors of ", remote.tensor_bytes, " bytes)"));
      OpsTransfer& t = writes[dst[i].cache_id];
      if (t.ops.empty()) {
        t.remote_cluster_id = remote_cluster_id;
        t.push = true;
        t.local_kind = local->kind;
        t.remote_kind = remote.memory_kind;
        t.local_region_ids = local->region_ids;
        t.remote_region_ids = remote.region_ids;
      }
      t.ops.push_back({reinterpret_cast<uint8_t*>(local->addrs[ranges[i].src_tensor]) + ranges[i].src_offset,
                       remote.region_ids[dst[i].tensor], dst[i].offset, ranges[i].length});
    }
  }
  // One request of the engine's queue, a group per destination cache.
  OpsJob::Groups groups;
  for (auto& [cache_id, t] : writes) groups.push_back(std::move(t));
  auto meter = MeterCall(remote_cluster_id, groups);
  Result r = transfers_.RunNow(remote_cluster_id, deadline,
                               std::make_shared<OpsJob>(link.get(), true, std::move(groups), ops_runner_, meter));
  return r.WithContext(Msg("push ranges to cluster ", remote_cluster_id));
}

}  // namespace lldd
