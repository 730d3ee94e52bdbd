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
#include <cstdint>
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
  // A spec without a registry makes a meter that measures nothing.
  explicit CallMeter(const MeterSpec& spec)
      : registry_(spec.registry),
        cluster_id_(spec.cluster_id),
        transport_(spec.transport),
        bytes_(spec.bytes),
        start_(spec.start != std::chrono::steady_clock::time_point{} ? spec.start : Now(spec.registry)),
        dir_(static_cast<uint8_t>(spec.dir)) {}
  ~CallMeter() { Finish(llm_datadist::LLM_FAILED); }
  CallMeter(const CallMeter&) = delete;
  CallMeter& operator=(const CallMeter&) = delete;

  void Begin() {
    if (registry_ == nullptr || begun_ || finished_) return;
    peer_ = registry_->Peer(cluster_id_, false);
    registry_->Begin(peer_);
    begun_ = true;
  }

  void Finish(Status status) {
    if (registry_ == nullptr || finished_) return;
    finished_ = true;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const auto dir = static_cast<Direction>(dir_);
    if (begun_) {
      registry_->Finish(peer_, transport_, dir, bytes_, seconds, status);
      // Let go here, on the thread that took it in Begin: the meter's
      // owner may be on another core, and a count change there would move
      // the counters' line between the cores per call.
      peer_.reset();
    } else {
      registry_->Record(registry_->Peer(cluster_id_, false), transport_, dir, bytes_, seconds, status);
    }
  }

 private:
  static std::chrono::steady_clock::time_point Now(const Registry* registry) {
    return registry != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  }

  // The spec's fields, packed: a meter lives in each request (one cache
  // line's worth), which the caller and a worker both touch.
  Registry* const registry_;
  const uint64_t cluster_id_;
  const char* const transport_;
  const uint64_t bytes_;
  const std::chrono::steady_clock::time_point start_;
  std::shared_ptr<TransferCounters> peer_;  // from Begin
  const uint8_t dir_;
  bool begun_ = false;
  bool finished_ = false;
};

}  // namespace lldd::metrics

#endif  // LLM_DATADIST_SRC_METRICS_CALL_METER_H_
