// A few lines summing up LlmDataDist::GetStats(), as the demo, the
// benchmark and the admission tool print them at the end of a run.
#ifndef LLM_DATADIST_TOOLS_COMMON_STATS_SUMMARY_H_
#define LLM_DATADIST_TOOLS_COMMON_STATS_SUMMARY_H_

#include <string>

#include "llm_datadist/llm_datadist.h"

namespace lldd_tools {

// Latency quantile `q` (0..1) of a histogram, as the upper bound of the
// bucket it falls in (in seconds); 0 if empty, +inf past the last bound.
double LatencyQuantile(const llm_datadist::LlmDataDist::Stats::Latency& h, double q);
// Lines (each ending in '\n'): links, admission, then one per transport.
std::string StatsSummary(const llm_datadist::LlmDataDist::Stats& stats);

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_STATS_SUMMARY_H_
