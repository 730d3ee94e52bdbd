// The requests of a demo run and the block pools they need.
#ifndef LLM_DATADIST_TOOLS_DEMO_WORKLOAD_H_
#define LLM_DATADIST_TOOLS_DEMO_WORKLOAD_H_

#include <cstdint>
#include <vector>

#include "common/model_preset.h"

namespace lldd_demo {

struct Request {
  uint32_t id = 0;
  uint64_t tokens = 0;  // prompt length
  uint64_t blocks = 0;  // KV blocks it occupies per tensor
};

struct WorkloadConfig {
  uint32_t requests = 16;
  uint64_t min_tokens = 512;
  uint64_t max_tokens = 8192;
  uint64_t seed = 1;
};

// Prompt lengths uniform in [min_tokens, max_tokens], the same for a seed
// on every platform (no std:: distributions, whose output is unspecified).
std::vector<Request> MakeRequests(const lldd_tools::ModelPreset& model, const WorkloadConfig& config);

// Blocks per pool so that `concurrency` of the largest requests fit at once:
// memory stays bounded however many requests run, as blocks are reused.
uint64_t PoolBlocks(const std::vector<Request>& requests, uint32_t concurrency);

}  // namespace lldd_demo

#endif  // LLM_DATADIST_TOOLS_DEMO_WORKLOAD_H_
