#include "common/model_preset.h"

namespace lldd_tools {

const std::vector<ModelPreset>& ModelPresets() {
  static const std::vector<ModelPreset> presets = {
      {"llama3-8b", 32, 8, 128, llm_datadist::DT_BF16, 2, 16, "Llama 3 8B (GQA, 8 KV heads)"},
      {"qwen2.5-7b", 28, 4, 128, llm_datadist::DT_BF16, 2, 16, "Qwen2.5 7B (GQA, 4 KV heads)"},
      {"tiny", 2, 1, 8, llm_datadist::DT_BF16, 2, 4, "2 layers of 64-byte blocks, for tests"},
  };
  return presets;
}

const ModelPreset* FindModelPreset(const std::string& name) {
  for (const auto& p : ModelPresets())
    if (name == p.name) return &p;
  return nullptr;
}

std::string ModelPresetNames() {
  std::string out;
  for (const auto& p : ModelPresets()) out += (out.empty() ? "" : ", ") + std::string(p.name);
  return out;
}

llm_datadist::CacheDesc ModelPreset::PoolDesc(uint64_t num_blocks) const {
  llm_datadist::CacheDesc d;
  d.placement = llm_datadist::CachePlacement::kHost;
  d.num_tensors = tensors();
  d.data_type = data_type;
  d.shape = {static_cast<int64_t>(num_blocks), block_tokens, kv_heads, head_dim};
  return d;
}

}  // namespace lldd_tools
