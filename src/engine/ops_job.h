// A planned transfer as a request of the engine's TransferQueue: one
// Engine::OpsTransfer per pair of memory kinds, all to one peer in one
// direction, run by the front end's `runner`. Jobs with the same `key`
// (the front end's name for "same peer, same runner") and direction, and
// the same memory kinds group by group, join into one job whose groups
// carry all their ops, so the join is the same engine transfers, only
// longer.
#ifndef LLM_DATADIST_SRC_ENGINE_OPS_JOB_H_
#define LLM_DATADIST_SRC_ENGINE_OPS_JOB_H_

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "engine/engine.h"
#include "engine/transfer_queue.h"
#include "metrics/call_meter.h"

namespace lldd {

// A transfer takes a lease per region id it names: each id once, sorted.
void LeaseEachRegionOnce(Engine::OpsTransfer* t);

class OpsJob : public TransferJob {
 public:
  using Groups = std::vector<Engine::OpsTransfer>;
  using Runner = std::function<Result(const Groups& groups, Deadline deadline)>;

  // `meter`, if it names a registry, measures this request (not a join
  // made of it). `groups` from SpareGroups/SpareTransfer, or any.
  OpsJob(const void* key, bool push, Groups groups, std::shared_ptr<const Runner> runner,
         const metrics::MeterSpec& meter = {});
  // The op lists go back to this thread's spare storage.
  ~OpsJob() override;

  const Groups& groups() const { return groups_; }
  Result Run(Deadline deadline) const override { return (*runner_)(groups_, deadline); }
  bool CanJoin(const TransferJob& other) const override;
  std::unique_ptr<TransferJob> Join(const std::vector<const TransferJob*>& jobs) const override;
  size_t ops() const override { return ops_; }
  uint64_t bytes() const override { return bytes_; }
  void Started() const override {
    if (meter_) meter_->Begin();
  }
  void Report(const Result& result) const override {
    if (meter_) meter_->Finish(result.code());
  }

 private:
  const void* const key_;
  const bool push_;
  Groups groups_;  // not changed before the destructor recycles it
  const std::shared_ptr<const Runner> runner_;
  mutable std::optional<metrics::CallMeter> meter_;  // in place: no allocation of its own
  size_t ops_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_OPS_JOB_H_
