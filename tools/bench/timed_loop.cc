#include "bench/timed_loop.h"

namespace lldd_bench {

LoopResult RunTimed(const LoopLimits& limits, Clock::time_point start, const std::function<bool()>& call) {
  LoopResult r;
  r.start = start;
  const auto until = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limits.min_seconds));
  Clock::time_point now = Clock::now();
  while (r.calls < limits.max_calls && (now < until || r.calls < limits.min_calls)) {
    const auto t0 = Clock::now();
    const bool ok = call();
    now = Clock::now();
    if (!ok) {
      r.ok = false;
      break;
    }
    r.latency_us.Add(std::chrono::duration<double, std::micro>(now - t0).count());
    ++r.calls;
  }
  r.end = now;
  return r;
}

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace lldd_bench
