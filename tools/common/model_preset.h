// KV-cache geometry of well-known models, as a paged serving engine lays
// it out: per layer one K and one V tensor of shape
// [num_blocks, block_tokens, kv_heads, head_dim].
#ifndef LLM_DATADIST_TOOLS_COMMON_MODEL_PRESET_H_
#define LLM_DATADIST_TOOLS_COMMON_MODEL_PRESET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "llm_datadist/llm_datadist.h"

namespace lldd_tools {

struct ModelPreset {
  const char* name;
  uint32_t layers;
  uint32_t kv_heads;
  uint32_t head_dim;
  llm_datadist::DataType data_type;
  uint32_t element_bytes;
  uint32_t block_tokens;
  const char* note;

  // K and V per layer, ordered K0, V0, K1, V1, ... so that layer l is
  // tensors [2l, 2l+1], which is what layer ranges in the API assume.
  uint32_t tensors() const { return 2 * layers; }
  uint64_t block_bytes() const { return uint64_t{block_tokens} * kv_heads * head_dim * element_bytes; }
  uint64_t blocks_for_tokens(uint64_t tokens) const { return (tokens + block_tokens - 1) / block_tokens; }
  // The cache descriptor of a pool of num_blocks blocks (host memory: the
  // tools fill and check it with the CPU).
  llm_datadist::CacheDesc PoolDesc(uint64_t num_blocks) const;
};

const ModelPreset* FindModelPreset(const std::string& name);
const std::vector<ModelPreset>& ModelPresets();
std::string ModelPresetNames();  // "llama3-8b, qwen2.5-7b, tiny"

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_MODEL_PRESET_H_
