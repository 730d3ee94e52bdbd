// The memory-speed yardstick: memcpy of exactly the ranges a call moves
// (same block size, count and order) inside this process. On one host a
// shared-memory transfer should approach it.
//
// Two figures: one thread copying call after call (with per-call latency),
// cross-memory attach of the ranges from another process, and all cores
// copying disjoint shares of the ranges at once, which is the
// machine's copy bandwidth and the real ceiling for a library that copies
// with several threads.
#ifndef LLM_DATADIST_TOOLS_BENCH_MEMCPY_BASELINE_H_
#define LLM_DATADIST_TOOLS_BENCH_MEMCPY_BASELINE_H_

#include <string>

#include "bench/bench_config.h"
#include "bench/block_lists.h"
#include "bench/socket_baseline.h"
#include "bench/timed_loop.h"

namespace lldd_bench {

struct MemcpyResult {
  BaselineResult one_thread;
  // Cross-memory attach (process_vm_readv) of the same ranges out of another
  // process, one thread: the ceiling for user memory on one host. 0 where
  // the kernel denies it.
  double cma_gbps = 0;
  double all_cores_gbps = 0;
  unsigned all_cores_threads = 0;
};

bool MeasureMemcpy(const Config& config, const BlockLists& lists, const LoopLimits& limits, MemcpyResult* out,
                   std::string* error);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_MEMCPY_BASELINE_H_
