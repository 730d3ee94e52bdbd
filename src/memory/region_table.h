// The memory a peer may touch: every registered or allocated tensor is a
// region with an id that is never reused. A peer names (region, offset,
// length); the table resolves it only if it lies wholly inside a live
// region, so no request can reach memory it was not given.
//
// Removal waits until no transfer still uses the region, so after
// Remove() returns the caller may free the memory: no late byte can land
// in it and none can be read from it. The wait is bounded: a lease taken
// for a peer's request can be cancelled (its connection shut down), and
// removal cancels the leases still held once its grace period has passed,
// so a peer that trickles a WRITE cannot hold UnregisterKvCache hostage.
// Leases taken without a canceller (this process's own transfers) are
// bounded by their callers' deadlines.
//
// Thread-safe.
#ifndef LLM_DATADIST_SRC_MEMORY_REGION_TABLE_H_
#define LLM_DATADIST_SRC_MEMORY_REGION_TABLE_H_

#include <sys/uio.h>

#include <condition_variable>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/segment.h"
#include "memory/allocation.h"
#include "memory/memory_kind.h"

namespace lldd {

class RegionTable;
class RegionLease;

struct Region {
  uint64_t id = 0;
  uint8_t* base = nullptr;
  uint64_t length = 0;
  MemoryKind kind = kHostRegistered;
  // The library's allocation the region lies in (null for user memory).
  std::shared_ptr<const Allocation> allocation;
  uint64_t allocation_offset = 0;
  // Opaque per-transport descriptors, indexed by the transport's slot
  // (transport/transport.h); the table keeps them without knowing them.
  std::vector<std::shared_ptr<void>> transport_data;
  int users = 0;  // guarded by the table's mutex
  // The leases among `users` that can be cancelled (guarded likewise).
  std::vector<RegionLease*> cancellable;
};

// Keeps regions alive (un-removable) while a transfer uses them.
class RegionLease {
 public:
  // Makes the holder stop using the memory promptly (shuts its connection
  // down); the holder then releases the lease. Runs on the removing thread
  // under the table's lock (so the lease and what it names are still
  // alive): must not block or call into the table.
  using Canceller = std::function<void()>;

  RegionLease() = default;
  // A lease that removal may cancel once its grace period has passed.
  explicit RegionLease(Canceller cancel) : cancel_(std::move(cancel)) {}
  ~RegionLease() { Release(); }
  RegionLease(const RegionLease&) = delete;
  RegionLease& operator=(const RegionLease&) = delete;
  void Release();

 private:
  friend class RegionTable;
  RegionTable* table_ = nullptr;
  std::vector<Region*> regions_;
  Canceller cancel_;
};

class RegionTable {
 public:
  // Observers of every region added and removed (the transports' region
  // hooks). `added` may fill the region's transport_data and refuse it;
  // `removed` runs once no lease holds the region any more.
  using AddedHook = std::function<Result(Region&)>;
  using RemovedHook = std::function<void(Region&)>;
  void SetHooks(AddedHook added, RemovedHook removed);

  // Adds a region; `*id` is its new id. Fails only if a hook refuses it.
  Result Add(void* base, uint64_t length, MemoryKind kind, std::shared_ptr<const Allocation> allocation,
             uint64_t allocation_offset, uint64_t* id);
  // User memory of `kind` (no allocation), for tests and simple callers.
  uint64_t Add(void* base, uint64_t length, MemoryKind kind = kHostRegistered);
  // Forgets the regions; returns once no lease holds any of them.
  // `detached` runs after they become unreachable through the table but
  // before the wait (to revoke peers' direct access). Leases still held
  // when the grace period (set_removal_grace_ms) has passed are cancelled;
  // returns how many were.
  size_t Remove(const std::vector<uint64_t>& ids, const std::function<void()>& detached = nullptr);
  // How long removal lets leases run before cancelling them (default
  // kDefaultRemovalGraceMs).
  void set_removal_grace_ms(int64_t ms);
  static constexpr int64_t kDefaultRemovalGraceMs = 2000;
  // Copies of live regions (for describing them to a peer). Leases them.
  Result Describe(const std::vector<uint64_t>& ids, RegionLease* lease, std::vector<Region>* out);
  // Resolves segments to addresses. On failure nothing is leased and the
  // result says which segment was refused: an unknown region is
  // LLM_KV_CACHE_NOT_EXIST, a range outside its region LLM_PARAM_INVALID.
  Result Resolve(const std::vector<Segment>& segments, RegionLease* lease, std::vector<iovec>* iovs);
  // Leases regions by id (for local tensors taking part in a transfer).
  Result Acquire(const std::vector<uint64_t>& ids, RegionLease* lease);
  size_t size() const;

 private:
  friend class RegionLease;
  void ReleaseAll(RegionLease* lease);
  void LeaseLocked(std::vector<Region*> used, RegionLease* lease);

  mutable std::mutex mu_;
  std::condition_variable released_;
  std::unordered_map<uint64_t, std::unique_ptr<Region>> regions_;
  std::vector<std::unique_ptr<Region>> removing_;
  AddedHook added_hook_;
  RemovedHook removed_hook_;
  uint64_t next_id_ = 1;
  int64_t removal_grace_ms_ = kDefaultRemovalGraceMs;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_REGION_TABLE_H_
