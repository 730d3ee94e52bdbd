// The decode process of the demo: a client that pulls each request's KV
// cache from prefill into its own pool and checks every byte.
#ifndef LLM_DATADIST_TOOLS_DEMO_DECODE_H_
#define LLM_DATADIST_TOOLS_DEMO_DECODE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/datadist_setup.h"
#include "common/line_channel.h"
#include "common/model_preset.h"
#include "common/progress_bar.h"
#include "common/stats.h"
#include "demo/workload.h"

namespace lldd_demo {

struct DecodeConfig {
  const lldd_tools::ModelPreset* model = nullptr;
  std::vector<Request> requests;
  uint64_t pool_blocks = 0;
  uint64_t seed = 1;
  bool layerwise = false;
  uint32_t concurrency = 2;  // requests pulled at once, one thread each
  bool prefault = true;      // touch the pool at startup, as an engine does
  lldd_tools::InstanceConfig instance;
};

struct DecodeResult {
  lldd_tools::LatencyStats latency_ms;  // per request, all of its pull calls
  uint64_t bytes = 0;                   // moved and verified
  uint32_t verified = 0;                // requests
  uint64_t calls = 0;                   // Pull calls made
  double pull_span_s = 0;               // first pull start to last pull end
  double prefault_s = 0;
  std::string link_transport;
  std::string stats_summary;            // GetStats() of the decode instance, at the end
  std::string error;                    // empty on success
};

// Links to prefill at 127.0.0.1:prefill_port and serves every request.
void RunDecode(const DecodeConfig& config, lldd_tools::LineChannel& prefill, uint16_t prefill_port,
               lldd_tools::ProgressBar* progress, DecodeResult* result);

}  // namespace lldd_demo

#endif  // LLM_DATADIST_TOOLS_DEMO_DECODE_H_
