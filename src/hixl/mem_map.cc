#include "hixl/mem_map.h"

#include "common/wire.h"
#include "memory/memory_kind.h"

namespace lldd::hixl_impl {
namespace {

bool Wraps(uint64_t addr, uint64_t len) { return addr > UINT64_MAX - len; }

}  // namespace

Result MemMap::Add(const MemEntry& e) {
  if (e.len == 0) return Result::ParamInvalid("memory of length 0");
  if (Wraps(e.addr, e.len)) return Result::ParamInvalid(Msg("address ", e.addr, " + length ", e.len, " wraps around"));
  by_addr_.emplace(e.addr, e);
  return Result::Ok();
}

bool MemMap::RemoveByCache(int64_t cache_id) {
  for (auto it = by_addr_.begin(); it != by_addr_.end(); ++it) {
    if (it->second.cache_id == cache_id) {
      by_addr_.erase(it);
      return true;
    }
  }
  return false;
}

const MemEntry* MemMap::FindExact(uint64_t addr, uint64_t len) const {
  auto [lo, hi] = by_addr_.equal_range(addr);
  for (auto it = lo; it != hi; ++it)
    if (it->second.len == len) return &it->second;
  return nullptr;
}

const MemEntry* MemMap::Find(uint64_t addr, uint64_t len) const {
  if (len == 0 || Wraps(addr, len)) return nullptr;
  // Entries starting at or below addr, nearest first: without overlapping
  // registrations the first one decides; with them, a wider earlier one may.
  auto it = by_addr_.upper_bound(addr);
  while (it != by_addr_.begin()) {
    --it;
    const MemEntry& e = it->second;
    if (addr - e.addr <= e.len && len <= e.len - (addr - e.addr)) return &e;
  }
  return nullptr;
}

std::vector<MemEntry> MemMap::All() const {
  std::vector<MemEntry> out;
  out.reserve(by_addr_.size());
  for (const auto& [addr, e] : by_addr_) out.push_back(e);
  return out;
}

std::vector<uint8_t> EncodeMemList(const std::vector<MemEntry>& entries) {
  WireWriter w;
  w.U32(static_cast<uint32_t>(entries.size()));
  for (const MemEntry& e : entries) {
    w.U64(e.addr);
    w.U64(e.len);
    w.U64(e.region_id);
    w.U32(e.kind);
  }
  return std::move(w.buffer());
}

Result DecodeMemList(const std::vector<uint8_t>& bytes, std::vector<MemEntry>* out) {
  constexpr size_t kEntryBytes = 8 + 8 + 8 + 4;
  WireReader r(bytes);
  const uint32_t n = r.U32();
  if (!r.ok() || n > kMaxMemEntries || r.left() != size_t{n} * kEntryBytes)
    return Result::ParamInvalid("malformed memory list");
  std::vector<MemEntry> entries(n);
  for (MemEntry& e : entries) {
    e.addr = r.U64();
    e.len = r.U64();
    e.region_id = r.U64();
    e.kind = r.U32();
    if (e.len == 0 || Wraps(e.addr, e.len) || (e.kind != kHostAllocated && e.kind != kHostRegistered && e.kind != kDeviceMemory))
      return Result::ParamInvalid("malformed memory list entry");
  }
  if (!r.done()) return Result::ParamInvalid("malformed memory list");
  *out = std::move(entries);
  return Result::Ok();
}

}  // namespace lldd::hixl_impl
