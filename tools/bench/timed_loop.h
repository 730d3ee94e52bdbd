// Repeats an operation for a time budget rather than a fixed count, so a
// 64 KiB call and a 256 MiB call both get a meaningful number of samples.
#ifndef LLM_DATADIST_TOOLS_BENCH_TIMED_LOOP_H_
#define LLM_DATADIST_TOOLS_BENCH_TIMED_LOOP_H_

#include <chrono>
#include <cstdint>
#include <functional>

#include "common/stats.h"

namespace lldd_bench {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC: immune to clock adjustments

struct LoopLimits {
  double min_seconds = 0.5;
  uint64_t min_calls = 3;
  uint64_t max_calls = 1000000;
};

struct LoopResult {
  lldd_tools::LatencyStats latency_us;  // one sample per call
  uint64_t calls = 0;
  Clock::time_point start;
  Clock::time_point end;
  bool ok = true;  // false: `call` failed and the loop stopped
};

// Calls `call` until both min_seconds have passed since `start` and
// min_calls were made (or max_calls, or a failure).
LoopResult RunTimed(const LoopLimits& limits, Clock::time_point start, const std::function<bool()>& call);

double Seconds(Clock::time_point a, Clock::time_point b);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_TIMED_LOOP_H_
