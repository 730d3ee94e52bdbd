// The memory-speed yardsticks for one host, measured on exactly the ranges
// a call moves (same block size, count and order), right after the row
// they are compared with:
//
// - memcpy inside this process, by one thread call after call (with
//   per-call latency) and by all cores at once, each copying its share of
//   the ranges for the time budget: the machine's copy bandwidth, the
//   ceiling for library-allocated caches mapped into both processes;
// - cross-memory attach of the ranges out of (pull: process_vm_readv) or
//   into (push: process_vm_writev) another process, by one thread and by
//   all cores: the ceiling for user memory (RegisterKvCache) on one host.
#ifndef LLM_DATADIST_TOOLS_BENCH_MEMCPY_BASELINE_H_
#define LLM_DATADIST_TOOLS_BENCH_MEMCPY_BASELINE_H_

#include <string>

#include "bench/bench_config.h"
#include "bench/block_lists.h"
#include "bench/socket_baseline.h"
#include "bench/timed_loop.h"

namespace lldd_bench {

struct MemoryLimits {
  BaselineResult memcpy_one;  // ways == 0: not measured
  BaselineResult memcpy_all;
  BaselineResult cma_one;     // gbps 0 with ways set: the kernel denied it
  BaselineResult cma_all;
};

// Measures the memcpy pair, the cross-memory-attach pair, or both;
// `all_cores` threads for the all-core figures.
bool MeasureMemoryLimits(const Config& config, const BlockLists& lists, const LoopLimits& limits, unsigned all_cores,
                         bool memcpy, bool cma, MemoryLimits* out, std::string* error);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_MEMCPY_BASELINE_H_
