// A planned transfer as a request of the engine's TransferQueue: one
// Engine::OpsTransfer per pair of memory kinds, all to one peer in one
// direction, run by the front end's `runner`. Jobs with the same `key`
// (the front end's name for "same peer, same runner") and direction, and
// the same memory kinds group by group, join into one job whose groups
// carry all their ops, so the join is the same engine transfers, only
// longer.
//
// A request of one op (HIXL's small request) keeps that op in the job
// itself (OneOp) rather than in op lists: the worker that runs or joins it
// reads the job's few cache lines and no others, and each line it read is
// one the caller's core must take back when it reuses the memory. Op lists
// for a lone one-op job are made on the running thread.
#ifndef LLM_DATADIST_SRC_ENGINE_OPS_JOB_H_
#define LLM_DATADIST_SRC_ENGINE_OPS_JOB_H_

#include <functional>
#include <memory>
#include <variant>
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
  // One op and what its group needs (`op.region_id` is the remote region).
  struct OneOp {
    uint64_t remote_cluster_id = 0;
    uint32_t local_kind = 0;
    uint32_t remote_kind = 0;
    uint64_t local_region_id = 0;
    IoOp op;
  };

  // `meter`, if it names a registry, measures this request (not a join
  // made of it). `groups` from SpareGroups/SpareTransfer, or any.
  OpsJob(const void* key, bool push, Groups groups, std::shared_ptr<const Runner> runner,
         const metrics::MeterSpec& meter = {});
  OpsJob(const void* key, bool push, const OneOp& one, std::shared_ptr<const Runner> runner,
         const metrics::MeterSpec& meter = {});
  // The op lists go back to this thread's spare storage.
  ~OpsJob() override;

  Result Run(Deadline deadline) const override;
  bool CanJoin(const TransferJob& other) const override;
  std::unique_ptr<TransferJob> Join(const std::vector<const TransferJob*>& jobs) const override;
  size_t ops() const override { return ops_; }
  uint64_t bytes() const override { return bytes_; }
  void Started() const override { meter_.Begin(); }
  void Report(const Result& result) const override { meter_.Finish(result.code()); }

 private:
  bool single() const { return std::holds_alternative<OneOp>(ops_of_); }
  const OneOp& one() const { return std::get<OneOp>(ops_of_); }
  const Groups& groups() const { return std::get<Groups>(ops_of_); }
  size_t group_count() const { return single() ? 1 : groups().size(); }
  // Group i's peer and memory kinds.
  struct Header {
    uint64_t remote_cluster_id;
    uint32_t local_kind;
    uint32_t remote_kind;
  };
  Header HeaderOf(size_t i) const;
  // Group i's peer, direction and memory kinds, on an empty transfer.
  void CopyHeader(size_t i, Engine::OpsTransfer* t) const;
  // Appends group i's ops and region ids to `t`.
  void AppendGroup(size_t i, Engine::OpsTransfer* t) const;

  // Laid out to fill three cache lines with the shared_ptr's counts (an
  // OpsJob of one op is made per request; see the top of this file).
  const void* const key_;
  const bool push_;
  uint32_t ops_ = 0;
  std::variant<OneOp, Groups> ops_of_;  // Groups: not changed before the destructor recycles them
  const std::shared_ptr<const Runner> runner_;
  mutable metrics::CallMeter meter_;  // in place: no allocation of its own
  uint64_t bytes_ = 0;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_OPS_JOB_H_
