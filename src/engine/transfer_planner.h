// Turns one API call (batch or block lists, layer ranges, size) into byte
// ranges between a source and a destination cache, validated against both
// caches' layouts before any byte moves.
//
// The planner is pure: it knows layouts, not addresses, regions or
// transports. Ranges of neighbouring block pairs (both indexes ascending by
// one) are merged into one.
#ifndef LLM_DATADIST_SRC_ENGINE_TRANSFER_PLANNER_H_
#define LLM_DATADIST_SRC_ENGINE_TRANSFER_PLANNER_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "common/result.h"
#include "engine/cache_layout.h"
#include "llm_datadist/llm_types.h"

namespace lldd {

struct CopyRange {
  uint32_t src_tensor = 0;
  uint64_t src_offset = 0;
  uint32_t dst_tensor = 0;
  uint64_t dst_offset = 0;
  uint64_t length = 0;
};

// Which source tensor goes to which destination tensor, from the layer
// ranges of `ext` (all layers by default).
Result MapTensors(const llm_datadist::KvCacheExtParam& ext, const CacheLayout& src, const CacheLayout& dst,
                  std::vector<std::pair<uint32_t, uint32_t>>* pairs);

// Block i of src_blocks goes to block i of dst_blocks, for every mapped tensor.
Result PlanBlocks(const CacheLayout& src, const CacheLayout& dst, const std::vector<uint64_t>& src_blocks,
                  const std::vector<uint64_t>& dst_blocks, const std::vector<std::pair<uint32_t, uint32_t>>& pairs,
                  std::vector<CopyRange>* out);

// Row src_row goes to row dst_row, starting `offset` bytes into the row,
// `size` bytes (-1: to the end of the row, which must then be the same
// size on both sides).
Result PlanRow(const CacheLayout& src, const CacheLayout& dst, uint64_t src_row, uint64_t dst_row, uint64_t offset,
               int64_t size, const std::vector<std::pair<uint32_t, uint32_t>>& pairs, std::vector<CopyRange>* out);

// All tensors, index for index (for calls without layer ranges).
std::vector<std::pair<uint32_t, uint32_t>> AllTensors(const CacheLayout& src, const CacheLayout& dst, Result* r);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_TRANSFER_PLANNER_H_
