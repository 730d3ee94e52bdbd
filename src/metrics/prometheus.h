// Stats as Prometheus text exposition (format 0.0.4): names prefixed
// llm_datadist_, counters ending in _total, byte counters with "bytes" in
// the name, latency in seconds as histograms. Per-peer series carry no
// histogram (thousands of peers times buckets would swamp a scrape); the
// per-transport ones do.
#ifndef LLM_DATADIST_SRC_METRICS_PROMETHEUS_H_
#define LLM_DATADIST_SRC_METRICS_PROMETHEUS_H_

#include <string>

#include "llm_datadist/llm_datadist.h"

namespace lldd::metrics {

std::string RenderPrometheus(const llm_datadist::LlmDataDist::Stats& stats, uint64_t cluster_id);

}  // namespace lldd::metrics

#endif  // LLM_DATADIST_SRC_METRICS_PROMETHEUS_H_
