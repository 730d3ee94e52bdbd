#include "engine/cache_registry.h"

#include <cstring>

#include "llm_datadist/llm_datadist.h"
#include "memory/allocator.h"
#include "memory/user_allocations.h"

namespace lldd {

RemoteDesc LocalCache::ToRemoteDesc() const {
  RemoteDesc d;
  d.placement = static_cast<uint32_t>(desc.placement);
  d.memory_kind = kind;
  d.num_tensors = desc.num_tensors;
  d.data_type = desc.data_type;
  d.shape = desc.shape;
  d.tensor_bytes = layout.tensor_bytes;
  d.region_ids = region_ids;
  return d;
}

int64_t CacheRegistry::Insert(std::shared_ptr<LocalCache> cache, bool library) {
  std::lock_guard<std::mutex> lock(mu_);
  cache->id = library ? llm_datadist::LlmDataDist::kLibraryCacheIdBase + next_library_id_++ : next_id_++;
  caches_[cache->id] = cache;
  return cache->id;
}

Result CacheRegistry::Allocate(const llm_datadist::CacheDesc& desc, llm_datadist::Cache* out, bool library) {
  auto cache = std::make_shared<LocalCache>();
  LDD_RETURN_IF_ERROR(ComputeLayout(desc, &cache->layout));
  cache->desc = desc;
  const uint64_t total = cache->layout.tensor_bytes * desc.num_tensors;
  if (total / desc.num_tensors != cache->layout.tensor_bytes || total > (1ULL << 46))
    return Result::ParamInvalid("cache is larger than 64 TiB");
  // Tensors start on 64-byte boundaries so that SIMD copies stay aligned.
  const uint64_t stride = (cache->layout.tensor_bytes + 63) / 64 * 64;
  const bool device = desc.placement == llm_datadist::CachePlacement::kDevice;
  std::shared_ptr<MemoryPool> pool;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pool = library ? nullptr : device ? device_pool_ : host_pool_;
  }
  if (pool) {
    LDD_RETURN_IF_ERROR(pool->Allocate(stride * desc.num_tensors, device, &cache->memory));
  } else {
    LDD_RETURN_IF_ERROR(AllocateCacheMemory(device, stride * desc.num_tensors, device_id_, &cache->memory));
  }
  cache->kind = cache->memory->kind();
  for (uint32_t t = 0; t < desc.num_tensors; ++t)
    cache->addrs.push_back(reinterpret_cast<uintptr_t>(cache->memory->data() + stride * t));
  LDD_RETURN_IF_ERROR(AddRegions(*cache, stride));
  out->cache_desc = desc;
  out->tensor_addrs = cache->addrs;
  out->cache_id = Insert(cache, library);
  return Result::Ok();
}

Result CacheRegistry::SetPools(const MemoryPoolConfig& device, const MemoryPoolConfig& host) {
  std::shared_ptr<MemoryPool> pools[2];
  const MemoryPoolConfig* configs[2] = {&device, &host};
  for (int i = 0; i < 2; ++i) {
    if (configs[i]->memory_size == 0) continue;
    std::shared_ptr<Allocation> backing;
    Result r = AllocateCacheMemory(i == 0, configs[i]->memory_size, device_id_, &backing);
    if (!r.ok()) return r.WithContext(Msg(i == 0 ? "the device" : "the host", " memory pool"));
    pools[i] = std::make_shared<MemoryPool>(std::move(backing), *configs[i]);
  }
  std::lock_guard<std::mutex> lock(mu_);
  device_pool_ = std::move(pools[0]);
  host_pool_ = std::move(pools[1]);
  return Result::Ok();
}

void CacheRegistry::DropPools() {
  std::lock_guard<std::mutex> lock(mu_);
  device_pool_.reset();  // chunks still held keep their pool
  host_pool_.reset();
}

Result CacheRegistry::AddRegions(LocalCache& cache, uint64_t stride, const std::vector<Backing>& user_backing) {
  // A pooled cache's regions name the pool's backing, which peers share.
  uint64_t base = 0;
  std::shared_ptr<const Allocation> shared = cache.memory ? SharedBacking(cache.memory, &base) : nullptr;
  for (size_t t = 0; t < cache.addrs.size(); ++t) {
    uint64_t id = 0;
    const bool user = t < user_backing.size();
    Result r = regions_.Add(reinterpret_cast<void*>(cache.addrs[t]), cache.layout.tensor_bytes, cache.kind,
                            user ? user_backing[t].allocation : shared,
                            user ? user_backing[t].offset : base + stride * t, &id);
    if (!r.ok()) {
      regions_.Remove(cache.region_ids);
      cache.region_ids.clear();
      return r.WithContext(Msg("tensor ", t));
    }
    cache.region_ids.push_back(id);
  }
  return Result::Ok();
}

Result CacheRegistry::Register(const llm_datadist::CacheDesc& desc, const std::vector<uint64_t>& addrs,
                               int64_t* cache_id,
                               bool library) {
  auto cache = std::make_shared<LocalCache>();
  LDD_RETURN_IF_ERROR(ComputeLayout(desc, &cache->layout));
  if (addrs.size() != desc.num_tensors)
    return Result::ParamInvalid(Msg(addrs.size(), " addresses given for ", desc.num_tensors, " tensors"));
  if (addrs.size() > kMaxRegisteredAddrs)
    return Result::ParamInvalid(Msg("at most ", kMaxRegisteredAddrs, " addresses per cache"));
  for (size_t i = 0; i < addrs.size(); ++i) {
    if (addrs[i] == 0) return Result::ParamInvalid(Msg("addrs[", i, "] is null"));
    if (addrs[i] > UINT64_MAX - cache->layout.tensor_bytes)
      return Result::ParamInvalid(Msg("addrs[", i, "] + tensor size wraps around"));
  }
  cache->desc = desc;
  cache->kind = ClassifyUserMemory(reinterpret_cast<const void*>(addrs[0]));
  for (size_t i = 1; i < addrs.size(); ++i)
    if (ClassifyUserMemory(reinterpret_cast<const void*>(addrs[i])) != cache->kind)
      return Result::ParamInvalid(Msg("addrs[", i, "] is ", MemoryKindName(ClassifyUserMemory(reinterpret_cast<const void*>(addrs[i]))),
                                      " but addrs[0] is ", MemoryKindName(cache->kind), "; one cache is one kind"));
  for (uint64_t a : addrs) cache->addrs.push_back(static_cast<uintptr_t>(a));
  // Memory the library allocated for the user (MallocMem) is shareable:
  // when every tensor lies in such memory of one kind, its regions name
  // the allocations, so a peer on this host maps the pages.
  std::vector<Backing> backing;
  for (uint64_t a : addrs) {
    Backing b;
    b.allocation = FindUserAllocation(a, cache->layout.tensor_bytes, &b.offset);
    if (!b.allocation || (!backing.empty() && b.allocation->kind() != backing.front().allocation->kind())) break;
    backing.push_back(std::move(b));
  }
  if (backing.size() == addrs.size()) {
    cache->kind = backing.front().allocation->kind();
  } else {
    backing.clear();
  }
  LDD_RETURN_IF_ERROR(AddRegions(*cache, 0, backing));
  *cache_id = Insert(cache, library);
  return Result::Ok();
}

Result CacheRegistry::Remove(int64_t cache_id, bool allocated, const RevokeHook& revoke) {
  std::shared_ptr<LocalCache> cache;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = caches_.find(cache_id);
    if (it == caches_.end()) return Result::Ok();  // unknown or already removed
    if (it->second->allocated() != allocated)
      return Result::ParamInvalid(Msg("cache ", cache_id, allocated ? " was registered: use UnregisterKvCache"
                                                                    : " was allocated: use DeallocateCache"));
    cache = it->second;
    caches_.erase(it);
  }
  Result revoked = Result::Ok();
  if (revoke) {
    regions_.Remove(cache->region_ids,
                    [&] { revoked = revoke(cache->region_ids, cache->kind, cache->allocated()); });
  } else {
    regions_.Remove(cache->region_ids);
  }
  if (revoked.ok()) return Result::Ok();
  if (!cache->allocated())
    return revoked.WithContext(Msg("cache ", cache_id, " is unregistered, but its memory must stay untouched while that "
                                   "peer process lives"));
  std::lock_guard<std::mutex> lock(mu_);
  quarantine_.push_back(std::move(cache));  // ours: kept until DropQuarantine
  return Result::Ok();
}

void CacheRegistry::DropQuarantine() {
  std::lock_guard<std::mutex> lock(mu_);
  quarantine_.clear();
}

std::shared_ptr<const LocalCache> CacheRegistry::Find(int64_t cache_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = caches_.find(cache_id);
  return it == caches_.end() ? nullptr : it->second;
}

std::shared_ptr<const LocalCache> CacheRegistry::FindByAddress(uint64_t addr, uint64_t length, uint32_t* tensor,
                                                               uint64_t* offset) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, cache] : caches_) {
    if (id >= llm_datadist::LlmDataDist::kLibraryCacheIdBase) break;  // ids are ordered; the library's come last
    for (size_t t = 0; t < cache->addrs.size(); ++t) {
      const uint64_t base = cache->addrs[t];
      if (addr >= base && addr - base <= cache->layout.tensor_bytes &&
          length <= cache->layout.tensor_bytes - (addr - base)) {
        *tensor = static_cast<uint32_t>(t);
        *offset = addr - base;
        return cache;
      }
    }
  }
  return nullptr;
}

void CacheRegistry::Clear() {
  std::map<int64_t, std::shared_ptr<LocalCache>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(caches_);
  }
  for (auto& [id, cache] : all) regions_.Remove(cache->region_ids);
}

size_t CacheRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return caches_.size();
}

}  // namespace lldd
