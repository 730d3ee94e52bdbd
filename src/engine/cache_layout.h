// The byte geometry of a cache: how many tensors, how big each is, and how
// big one row (batch entry or block) of a tensor is. Both the local and the
// remote side of a transfer are described this way.
#ifndef LLM_DATADIST_SRC_ENGINE_CACHE_LAYOUT_H_
#define LLM_DATADIST_SRC_ENGINE_CACHE_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "common/result.h"
#include "llm_datadist/llm_types.h"

namespace lldd {

struct CacheLayout {
  uint32_t num_tensors = 0;
  uint64_t tensor_bytes = 0;
  uint64_t rows = 0;       // shape[0]: batch size or block count
  uint64_t row_bytes = 0;  // tensor_bytes / rows
};

// Bits per element of a data type; 0 for types that cannot be in a cache
// (strings, resources, DT_UNDEFINED).
uint32_t DataTypeBits(llm_datadist::DataType type);

// Validates a descriptor and computes its layout. Sub-byte types (int4,
// fp4, fp6, ...) are packed; a row that does not end on a byte boundary
// is refused.
Result ComputeLayout(const llm_datadist::CacheDesc& desc, CacheLayout* layout);
Result ComputeLayout(uint32_t num_tensors, int32_t data_type, const std::vector<int64_t>& shape, CacheLayout* layout);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_CACHE_LAYOUT_H_
