// One transfer call measured from construction to its Finish, for front
// ends whose calls end on another thread (HIXL's asynchronous requests) or
// may never run (a request refused, or failed by Finalize while queued):
// the call is in flight until Finish, or until the meter is destroyed
// (then as LLM_FAILED). Finish counts once. Thread-safe: Finish may come
// from any thread.
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
  ~CallMeter() { Finish(llm_datadist::LLM_FAILED); }
  CallMeter(const CallMeter&) = delete;
  CallMeter& operator=(const CallMeter&) = delete;

  void Finish(Status status) {
    if (finished_.exchange(true, std::memory_order_relaxed)) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    registry_->Finish(peer_, transport_, dir_, bytes_, seconds, status);
  }

 private:
  Registry* const registry_;
  const std::shared_ptr<TransferCounters> peer_;
  const char* const transport_;
  const Direction dir_;
  const uint64_t bytes_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<bool> finished_{false};
};

}  // namespace lldd::metrics

#endif  // LLM_DATADIST_SRC_METRICS_CALL_METER_H_
