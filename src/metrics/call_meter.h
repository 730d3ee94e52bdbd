// One transfer call measured from construction (when it was planned) to
// its Finish, for front ends whose calls are requests of the engine's
// transfer queue: they may end on another thread (HIXL's asynchronous
// requests) or never run (refused, or failed by Finalize while queued).
// The call counts as in flight from Begin (a data path starts it) to
// Finish, or to the meter's destruction (then as LLM_FAILED); its latency
// runs from construction, queueing included. A queued request touches no
// shared counter: the thread that queues it and the worker that runs it
// would otherwise pass those cache lines between their cores per request.
// Finish counts once. Begin and Finish: one thread at a time, ordered
// with the destruction (the queue hands finished jobs back under a lock).
#ifndef LLM_DATADIST_SRC_METRICS_CALL_METER_H_
#define LLM_DATADIST_SRC_METRICS_CALL_METER_H_

#include <chrono>
#include <memory>

#include "metrics/metrics.h"

namespace lldd::metrics {

// What a meter measures, worked out when the call is planned.
struct MeterSpec {
  Registry* registry = nullptr;  // null: the call is not measured
  uint64_t cluster_id = 0;
  const char* transport = nullptr;  // a static name, or null
  Direction dir = kPull;
  uint64_t bytes = 0;
  std::chrono::steady_clock::time_point start{};  // when the call began; unset: the meter's construction
};

class CallMeter {
 public:
  explicit CallMeter(const MeterSpec& spec)
      : spec_(spec) {
    if (spec_.start == std::chrono::steady_clock::time_point{}) spec_.start = std::chrono::steady_clock::now();
  }
  ~CallMeter() { Finish(llm_datadist::LLM_FAILED); }
  CallMeter(const CallMeter&) = delete;
  CallMeter& operator=(const CallMeter&) = delete;

  void Begin() {
    if (begun_ || finished_) return;
    peer_ = spec_.registry->Peer(spec_.cluster_id, false);
    spec_.registry->Begin(peer_);
    begun_ = true;
  }

  void Finish(Status status) {
    if (finished_) return;
    finished_ = true;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - spec_.start).count();
    if (begun_) {
      spec_.registry->Finish(peer_, spec_.transport, spec_.dir, spec_.bytes, seconds, status);
      // Let go here, on the thread that took it in Begin: the meter's
      // owner may be on another core, and a count change there would move
      // the counters' line between the cores per call.
      peer_.reset();
    } else {
      spec_.registry->Record(spec_.registry->Peer(spec_.cluster_id, false), spec_.transport, spec_.dir, spec_.bytes,
                             seconds, status);
    }
  }

 private:
  MeterSpec spec_;  // its start set: one copy of the time, the meter lives in each request
  std::shared_ptr<TransferCounters> peer_;  // from Begin
  bool begun_ = false;
  bool finished_ = false;
};

}  // namespace lldd::metrics

#endif  // LLM_DATADIST_SRC_METRICS_CALL_METER_H_
