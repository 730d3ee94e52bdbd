// The caches of this instance: ids, descriptors, tensor addresses, the
// memory regions peers may reach, and (for AllocateCache) the memory itself.
//
// Ids are positive, start at 1 and are never reused. Removing a cache first
// revokes its regions (waiting for transfers that use them), then releases
// memory; a transfer that looked the cache up just before then fails with
// LLM_KV_CACHE_NOT_EXIST instead of touching freed memory. Thread-safe.
#ifndef LLM_DATADIST_SRC_ENGINE_CACHE_REGISTRY_H_
#define LLM_DATADIST_SRC_ENGINE_CACHE_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "control/protocol.h"
#include "engine/cache_layout.h"
#include "llm_datadist/llm_types.h"
#include "memory/region_table.h"
#include "memory/allocation.h"
#include "memory/memory_pool.h"

namespace lldd {

struct LocalCache {
  int64_t id = 0;
  llm_datadist::CacheDesc desc;
  CacheLayout layout;
  std::vector<uintptr_t> addrs;
  std::vector<uint64_t> region_ids;
  MemoryKind kind = kHostRegistered;
  std::shared_ptr<Allocation> memory;  // set for AllocateCache
  bool allocated() const { return memory != nullptr; }
  RemoteDesc ToRemoteDesc() const;
};

class CacheRegistry {
 public:
  // The original's limit is 240; ours is the protocol's per-cache maximum.
  static constexpr size_t kMaxRegisteredAddrs = kMaxTensorsPerCache;

  explicit CacheRegistry(RegionTable& regions) : regions_(regions) {}
  // `device_id` is OPTION_DEVICE_ID, for caches placed on the device.
  void set_device_id(int32_t device_id) { device_id_ = device_id; }
  // Makes the pools user caches of each placement are carved from (a zero
  // memory_size: none, memory per cache as before). Library caches never
  // use them: the pool is the user's budget.
  Result SetPools(const MemoryPoolConfig& device, const MemoryPoolConfig& host);
  void DropPools();
  // `library`: the id comes from LlmDataDist::kLibraryCacheIdBase upwards
  // (a cache a layer above keeps for itself), not from the user ids 1, 2, ...
  Result Allocate(const llm_datadist::CacheDesc& desc, llm_datadist::Cache* cache, bool library = false);
  Result Register(const llm_datadist::CacheDesc& desc, const std::vector<uint64_t>& addrs, int64_t* cache_id,
                  bool library = false);
  // Called with a removed cache's regions (their memory kind, and whether
  // the library allocated them) once no new access can start, before
  // waiting for accesses in flight: it must make peers that reach the
  // memory directly (shared mappings) stop doing so. A failure means a
  // peer may still write the memory.
  using RevokeHook =
      std::function<Result(const std::vector<uint64_t>& region_ids, uint32_t kind, bool allocated)>;

  // `allocated` says which call asks: Deallocate (true) or Unregister (false).
  // If the revocation fails, allocated memory is kept (DropQuarantine) rather
  // than freed, and a registered cache's removal fails with the reason:
  // the caller must not free that memory while the peer process lives.
  Result Remove(int64_t cache_id, bool allocated, const RevokeHook& revoke = nullptr);
  // Frees the allocated caches kept because a peer did not confirm their
  // revocation: call once the transports are stopped (no peer reaches
  // them then).
  void DropQuarantine();
  std::shared_ptr<const LocalCache> Find(int64_t cache_id) const;
  // The user cache (not a library one) whose tensor holds [addr, addr +
  // length), and where: null if none does.
  std::shared_ptr<const LocalCache> FindByAddress(uint64_t addr, uint64_t length, uint32_t* tensor,
                                                  uint64_t* offset) const;
  void Clear();
  size_t size() const;

 private:
  int64_t Insert(std::shared_ptr<LocalCache> cache, bool library = false);
  // Where a registered tensor's memory lies in an allocation of ours.
  struct Backing {
    std::shared_ptr<const Allocation> allocation;
    uint64_t offset = 0;
  };
  // Adds a region per tensor; on failure removes those already added.
  // `user_backing`: per tensor, for user memory the library allocated
  // (empty: none, or the cache is a library allocation).
  Result AddRegions(LocalCache& cache, uint64_t stride, const std::vector<Backing>& user_backing = {});

  RegionTable& regions_;
  mutable std::mutex mu_;
  std::map<int64_t, std::shared_ptr<LocalCache>> caches_;
  std::vector<std::shared_ptr<LocalCache>> quarantine_;
  int64_t next_id_ = 1;
  int64_t next_library_id_ = 0;  // added to kLibraryCacheIdBase
  int32_t device_id_ = 0;
  std::shared_ptr<MemoryPool> device_pool_;
  std::shared_ptr<MemoryPool> host_pool_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_CACHE_REGISTRY_H_
