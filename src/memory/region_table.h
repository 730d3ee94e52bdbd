// The memory a peer may touch: every registered or allocated tensor is a
// region with an id that is never reused. A peer names (region, offset,
// length); the table resolves it only if it lies wholly inside a live
// region, so no request can reach memory it was not given.
//
// Removal waits until no transfer still uses the region, so after
// Remove() returns the caller may free the memory: no late byte can land
// in it and none can be read from it.
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

namespace lldd {

class RegionTable;

// Where a region lives when its memory can be shared with a peer on the
// same host (a memfd it can map), rather than only read through us.
struct ShmBacking {
  int memfd = -1;            // -1: plain process memory
  uint64_t memory_id = 0;    // identifies the memfd (one per allocated cache)
  uint64_t memfd_offset = 0;
  uint64_t memfd_size = 0;
};

struct Region {
  uint64_t id = 0;
  uint8_t* base = nullptr;
  uint64_t length = 0;
  ShmBacking backing;
  int users = 0;  // guarded by the table's mutex
};

// Keeps regions alive (un-removable) while a transfer uses them.
class RegionLease {
 public:
  RegionLease() = default;
  ~RegionLease() { Release(); }
  RegionLease(const RegionLease&) = delete;
  RegionLease& operator=(const RegionLease&) = delete;
  void Release();

 private:
  friend class RegionTable;
  RegionTable* table_ = nullptr;
  std::vector<Region*> regions_;
};

class RegionTable {
 public:
  uint64_t Add(void* base, uint64_t length, const ShmBacking& backing = {});
  // Forgets the regions; returns once no lease holds any of them.
  // `detached` runs after they become unreachable through the table but
  // before the wait (to revoke peers' direct access).
  void Remove(const std::vector<uint64_t>& ids, const std::function<void()>& detached = nullptr);
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
  void ReleaseAll(std::vector<Region*>& regions);

  mutable std::mutex mu_;
  std::condition_variable released_;
  std::unordered_map<uint64_t, std::unique_ptr<Region>> regions_;
  std::vector<std::unique_ptr<Region>> removing_;
  uint64_t next_id_ = 1;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_REGION_TABLE_H_
