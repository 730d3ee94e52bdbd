// A fixed pool that AllocateCache carves caches from (the vendor's
// llm.MemPoolConfig / llm.HostMemPoolConfig): one backing allocation made at
// Initialize, so a process that configured a pool never allocates cache
// memory beyond it, and exhaustion is a status rather than a late OOM kill.
//
// Chunks are page-aligned runs of the backing memory (first fit, freed
// chunks coalesce with their neighbours). A chunk is an Allocation of its
// own, so a cache holds one exactly as it holds unpooled memory; its memory
// returns to the pool when the last holder (cache, quarantine, a transfer in
// flight) drops it. Peers share the backing allocation: regions name it with
// the chunk's offset (see Chunk::backing). Thread-safe.
#ifndef LLM_DATADIST_SRC_MEMORY_MEMORY_POOL_H_
#define LLM_DATADIST_SRC_MEMORY_MEMORY_POOL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"
#include "memory/allocation.h"

namespace lldd {

struct MemoryPoolConfig {
  uint64_t memory_size = 0;  // 0: no pool
  uint32_t page_shift = 16;  // chunks are multiples of 1 << page_shift bytes
};

// Parses the vendor's JSON ({"memory_size": N, "page_shift": S}, S in
// [10, 31), default 16); LLM_PARAM_INVALID naming `key` otherwise.
Result ParseMemoryPoolConfig(const char* key, const std::string& json, MemoryPoolConfig* out);

class MemoryPool : public std::enable_shared_from_this<MemoryPool> {
 public:
  // Takes the backing memory (its size must be at least config.memory_size).
  MemoryPool(std::shared_ptr<Allocation> backing, const MemoryPoolConfig& config);

  // A chunk of at least `bytes`; LLM_OUT_OF_MEMORY (`device`:
  // LLM_DEVICE_OUT_OF_MEMORY) when no free run is large enough.
  Result Allocate(uint64_t bytes, bool device, std::shared_ptr<Allocation>* out);

  uint64_t capacity() const { return capacity_; }
  uint64_t free_bytes() const;
  uint64_t page_size() const { return page_; }

  class Chunk;  // public for SharedBacking

 private:
  void Release(uint64_t offset, uint64_t size);

  const std::shared_ptr<Allocation> backing_;
  const uint64_t page_;
  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::map<uint64_t, uint64_t> free_;  // offset -> size; no two adjacent
};

// The allocation that regions and peers share for `memory`, and where
// `memory` starts in it: a pool chunk names its pool's backing, any other
// allocation itself at offset 0.
std::shared_ptr<Allocation> SharedBacking(const std::shared_ptr<Allocation>& memory, uint64_t* offset);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_MEMORY_POOL_H_
