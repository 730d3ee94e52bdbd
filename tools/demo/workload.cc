#include "demo/workload.h"

#include <algorithm>

#include "common/pattern.h"

namespace lldd_demo {

std::vector<Request> MakeRequests(const lldd_tools::ModelPreset& model, const WorkloadConfig& config) {
  std::vector<Request> out;
  const uint64_t span = config.max_tokens - config.min_tokens + 1;
  uint64_t state = config.seed;
  for (uint32_t i = 0; i < config.requests; ++i) {
    state = lldd_tools::SplitMix64(state);
    Request r;
    r.id = i;
    r.tokens = config.min_tokens + state % span;
    r.blocks = model.blocks_for_tokens(r.tokens);
    out.push_back(r);
  }
  return out;
}

uint64_t PoolBlocks(const std::vector<Request>& requests, uint32_t concurrency) {
  uint64_t largest = 0;
  for (const auto& r : requests) largest = std::max(largest, r.blocks);
  return largest * std::max<uint32_t>(1, concurrency);
}

}  // namespace lldd_demo
