// The prefill process of the demo: a server that "computes" each request's
// KV cache into blocks of its pool and hands them to decode.
#ifndef LLM_DATADIST_TOOLS_DEMO_PREFILL_H_
#define LLM_DATADIST_TOOLS_DEMO_PREFILL_H_

#include <cstdint>
#include <vector>

#include "common/datadist_setup.h"
#include "common/line_channel.h"
#include "common/model_preset.h"
#include "demo/workload.h"

namespace lldd_demo {

constexpr uint64_t kPrefillClusterId = 1;
constexpr uint64_t kDecodeClusterId = 2;

struct PrefillConfig {
  const lldd_tools::ModelPreset* model = nullptr;
  std::vector<Request> requests;
  uint64_t pool_blocks = 0;
  uint64_t seed = 1;
  bool prefault = true;  // touch the pool at startup, as an engine does
  lldd_tools::InstanceConfig instance;  // listen address included
};

// Runs until decode says "quit"; the process exit code.
int RunPrefill(const PrefillConfig& config, lldd_tools::LineChannel& decode);

}  // namespace lldd_demo

#endif  // LLM_DATADIST_TOOLS_DEMO_PREFILL_H_
