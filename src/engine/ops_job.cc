#include "engine/ops_job.h"

#include <algorithm>
#include <typeinfo>

#include "engine/spare_transfers.h"

namespace lldd {

// With a shared_ptr's counts (16 bytes on the platforms we build for) in
// the same block, three cache lines (ops_job.h).
#if !defined(_GLIBCXX_DEBUG)  // its containers are larger
static_assert(sizeof(OpsJob) <= 3 * 64 - 16, "OpsJob outgrew three cache lines");
#endif

void LeaseEachRegionOnce(Engine::OpsTransfer* t) {
  for (auto* ids : {&t->local_region_ids, &t->remote_region_ids}) {
    std::sort(ids->begin(), ids->end());
    ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
  }
}

OpsJob::OpsJob(const void* key, bool push, Groups groups, std::shared_ptr<const Runner> runner,
               const metrics::MeterSpec& meter)
    : key_(key), push_(push), ops_of_(std::move(groups)), runner_(std::move(runner)), meter_(meter) {
  for (const auto& g : this->groups()) {
    ops_ += static_cast<uint32_t>(g.ops.size());
    for (const auto& op : g.ops) bytes_ += op.length;
  }
}

OpsJob::OpsJob(const void* key, bool push, const OneOp& one, std::shared_ptr<const Runner> runner,
               const metrics::MeterSpec& meter)
    : key_(key), push_(push), ops_(1), ops_of_(one), runner_(std::move(runner)), meter_(meter), bytes_(one.op.length) {}

OpsJob::~OpsJob() {
  if (!single()) RecycleGroups(std::move(std::get<Groups>(ops_of_)));
}

Result OpsJob::Run(Deadline deadline) const {
  if (!single()) return (*runner_)(groups(), deadline);
  // The lists from this (running) thread's spare storage.
  Groups lists = SpareGroups();
  lists.push_back(SpareTransfer());
  CopyHeader(0, &lists[0]);
  AppendGroup(0, &lists[0]);
  Result r = (*runner_)(lists, deadline);
  RecycleGroups(std::move(lists));
  return r;
}

OpsJob::Header OpsJob::HeaderOf(size_t i) const {
  if (single()) return {one().remote_cluster_id, one().local_kind, one().remote_kind};
  const Engine::OpsTransfer& g = groups()[i];
  return {g.remote_cluster_id, g.local_kind, g.remote_kind};
}

void OpsJob::CopyHeader(size_t i, Engine::OpsTransfer* t) const {
  const Header h = HeaderOf(i);
  t->push = push_;
  t->remote_cluster_id = h.remote_cluster_id;
  t->local_kind = h.local_kind;
  t->remote_kind = h.remote_kind;
}

void OpsJob::AppendGroup(size_t i, Engine::OpsTransfer* t) const {
  if (single()) {
    t->ops.push_back(one().op);
    t->local_region_ids.push_back(one().local_region_id);
    t->remote_region_ids.push_back(one().op.region_id);
    return;
  }
  const Engine::OpsTransfer& g = groups()[i];
  t->ops.insert(t->ops.end(), g.ops.begin(), g.ops.end());
  t->local_region_ids.insert(t->local_region_ids.end(), g.local_region_ids.begin(), g.local_region_ids.end());
  t->remote_region_ids.insert(t->remote_region_ids.end(), g.remote_region_ids.begin(), g.remote_region_ids.end());
}

bool OpsJob::CanJoin(const TransferJob& other) const {
  // typeid, not dynamic_cast: a worker asks this of every queued request
  // it looks at, with the queue locked.
  if (typeid(other) != typeid(OpsJob)) return false;
  const auto* o = static_cast<const OpsJob*>(&other);
  if (o->key_ != key_ || o->push_ != push_ || o->group_count() != group_count()) return false;
  for (size_t i = 0; i < group_count(); ++i) {
    const Header mine = HeaderOf(i);
    const Header theirs = o->HeaderOf(i);
    if (mine.local_kind != theirs.local_kind || mine.remote_kind != theirs.remote_kind) return false;
  }
  return true;
}

std::unique_ptr<TransferJob> OpsJob::Join(const std::vector<const TransferJob*>& jobs) const {
  // The joined lists from this (worker) thread's spare storage: a join is
  // made and dropped per transfer.
  Groups joined = SpareGroups();
  for (size_t i = 0; i < group_count(); ++i) {
    joined.push_back(SpareTransfer());
    CopyHeader(i, &joined[i]);
  }
  for (const TransferJob* job : jobs) {
    const auto* j = static_cast<const OpsJob*>(job);
    for (size_t i = 0; i < joined.size(); ++i) j->AppendGroup(i, &joined[i]);
  }
  for (Engine::OpsTransfer& g : joined) LeaseEachRegionOnce(&g);
  // The runner, not owned: the joined jobs own it and outlive the join
  // (the queue runs the join while it holds them). Owning it would change
  // a count on the peer's line, which the callers' cores use per request.
  std::shared_ptr<const Runner> runner(std::shared_ptr<const Runner>(), runner_.get());
  return std::make_unique<OpsJob>(key_, push_, std::move(joined), std::move(runner));
}

}  // namespace lldd
