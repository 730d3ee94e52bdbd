// Registered memory by address: HIXL names memory by address, the engine
// and its transports by (region id, offset). A MemMap holds one engine's
// registrations (ours, or a snapshot of a peer's) and resolves an address
// range to the registration that wholly contains it.
//
// The peer's snapshot travels as a MemList (encoded below, every length
// checked on decoding). Not thread-safe: owners lock.
#ifndef LLM_DATADIST_SRC_HIXL_MEM_MAP_H_
#define LLM_DATADIST_SRC_HIXL_MEM_MAP_H_

#include <cstdint>
#include <map>
#include <vector>

#include "common/result.h"

namespace lldd::hixl_impl {

struct MemEntry {
  uint64_t addr = 0;
  uint64_t len = 0;
  uint64_t region_id = 0;
  uint32_t kind = 0;   // MemoryKind (memory/memory_kind.h)
  int64_t cache_id = 0;  // the engine's registration (local entries only)
  bool operator==(const MemEntry&) const = default;
};

class MemMap {
 public:
  // Fails (PARAM_INVALID) if `addr + len` wraps or len is 0.
  Result Add(const MemEntry& e);
  // Removes the entry of that cache id; false if none.
  bool RemoveByCache(int64_t cache_id);
  // The entry with exactly this range, or null.
  const MemEntry* FindExact(uint64_t addr, uint64_t len) const;
  // An entry that wholly contains [addr, addr + len), or null.
  const MemEntry* Find(uint64_t addr, uint64_t len) const;
  std::vector<MemEntry> All() const;
  size_t size() const { return by_addr_.size(); }
  void Clear() { by_addr_.clear(); }

 private:
  std::multimap<uint64_t, MemEntry> by_addr_;
};

// The most registrations one engine may hold and describe to a peer (the
// vendor advises at most 4096): their list, 28 bytes each, must fit a
// control message (1 MiB, control/control_channel.cc).
constexpr uint32_t kMaxMemEntries = 1U << 15;

std::vector<uint8_t> EncodeMemList(const std::vector<MemEntry>& entries);
// Checks the count, the exact size and every range (no wrap, no zero
// length, a known memory kind); cache ids are not sent.
Result DecodeMemList(const std::vector<uint8_t>& bytes, std::vector<MemEntry>* out);

}  // namespace lldd::hixl_impl

#endif  // LLM_DATADIST_SRC_HIXL_MEM_MAP_H_
