// One transfer call measured from construction to destruction, for front
// ends whose calls end on another thread (HIXL's asynchronous requests) or
// may never run (a request refused, or failed by Finalize while queued):
// the call is in flight while the meter lives, and its outcome is the
// status last reported (LLM_FAILED if none was). Thread-safe: Report may
// come from any thread.
#ifndef LLM_DATADIST_SRC_METRICS_CALL_METER_H_
#define LLM_DATADIST_SRC_METRICS_CALL_METER_H_

#include <atomic>
#include <chrono>
#include <memory>

#include "metrics/metrics.h"

namespace lldd::metrics {

class CallMeter {
 public:
  CallMeter(Registry* registry, uint64_t cluster_id, const char* transport, Direction dir, uint64_t bytes)
      : registry_(registry), peer_(registry->Peer(cluster_id, false)), transport_(transport), dir_(dir),
        bytes_(bytes), start_(std::chrono::steady_clock::now()) {
    registry_->Begin(peer_);
  }
  ~CallMeter() {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    registry_->Finish(peer_, transport_, dir_, bytes_, seconds, status_.load(std::memory_order_relaxed));
  }
  CallMeter(const CallMeter&) = delete;
  CallMeter& operator=(const CallMeter&) = delete;

  void Report(Status status) { status_.store(status, std::memory_order_relaxed); }

 private:
  Registry* const registry_;
  const std::shared_ptr<TransferCounters> peer_;
  const char* const transport_;
  const Direction dir_;
  const uint64_t bytes_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<Status> status_{llm_datadist::LLM_FAILED};
};

}  // namespace lldd::metrics

#endif  // LLM_DATADIST_SRC_METRICS_CALL_METER_H_
