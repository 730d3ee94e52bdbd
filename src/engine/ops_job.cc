#include "engine/ops_job.h"

#include <algorithm>
#include <typeinfo>

#include "engine/spare_transfers.h"

namespace lldd {

void LeaseEachRegionOnce(Engine::OpsTransfer* t) {
  for (auto* ids : {&t->local_region_ids, &t->remote_region_ids}) {
    std::sort(ids->begin(), ids->end());
    ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
  }
}

OpsJob::OpsJob(const void* key, bool push, Groups groups, std::shared_ptr<const Runner> runner,
               const metrics::MeterSpec& meter)
    : key_(key), push_(push), groups_(std::move(groups)), runner_(std::move(runner)) {
  if (meter.registry != nullptr) meter_.emplace(meter);
  for (const auto& g : groups_) {
    ops_ += g.ops.size();
    for (const auto& op : g.ops) bytes_ += op.length;
  }
}

OpsJob::~OpsJob() { RecycleGroups(std::move(groups_)); }

bool OpsJob::CanJoin(const TransferJob& other) const {
  // typeid, not dynamic_cast: a worker asks this of every queued request
  // it looks at, with the queue locked.
  if (typeid(other) != typeid(OpsJob)) return false;
  const auto* o = static_cast<const OpsJob*>(&other);
  if (o->key_ != key_ || o->push_ != push_ || o->groups_.size() != groups_.size()) return false;
  for (size_t i = 0; i < groups_.size(); ++i)
    if (o->groups_[i].local_kind != groups_[i].local_kind || o->groups_[i].remote_kind != groups_[i].remote_kind)
      return false;
  return true;
}

std::unique_ptr<TransferJob> OpsJob::Join(const std::vector<const TransferJob*>& jobs) const {
  // The joined lists from this (worker) thread's spare storage: a join is
  // made and dropped per transfer.
  Groups joined = SpareGroups();
  for (const Engine::OpsTransfer& g : groups_) {
    Engine::OpsTransfer t = SpareTransfer();
    t.remote_cluster_id = g.remote_cluster_id;
    t.push = g.push;
    t.local_kind = g.local_kind;
    t.remote_kind = g.remote_kind;
    t.local_region_ids.assign(g.local_region_ids.begin(), g.local_region_ids.end());
    t.remote_region_ids.assign(g.remote_region_ids.begin(), g.remote_region_ids.end());
    t.ops.assign(g.ops.begin(), g.ops.end());
    joined.push_back(std::move(t));
  }
  for (size_t j = 1; j < jobs.size(); ++j) {
    const Groups& more = static_cast<const OpsJob*>(jobs[j])->groups_;
    for (size_t i = 0; i < more.size(); ++i) {
      Engine::OpsTransfer& g = joined[i];
      g.ops.insert(g.ops.end(), more[i].ops.begin(), more[i].ops.end());
      g.local_region_ids.insert(g.local_region_ids.end(), more[i].local_region_ids.begin(),
                                more[i].local_region_ids.end());
      g.remote_region_ids.insert(g.remote_region_ids.end(), more[i].remote_region_ids.begin(),
                                 more[i].remote_region_ids.end());
    }
  }
  for (Engine::OpsTransfer& g : joined) LeaseEachRegionOnce(&g);
  // The runner, not owned: the joined jobs own it and outlive the join
  // (the queue runs the join while it holds them). Owning it would change
  // a count on the peer's line, which the callers' cores use per request.
  std::shared_ptr<const Runner> runner(std::shared_ptr<const Runner>(), runner_.get());
  return std::make_unique<OpsJob>(key_, push_, std::move(joined), std::move(runner));
}

}  // namespace lldd
