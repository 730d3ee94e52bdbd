#include "memory/region_table.h"

#include <algorithm>
#include <chrono>

namespace lldd {

void RegionLease::Release() {
  if (table_ != nullptr) table_->ReleaseAll(this);
  table_ = nullptr;
}

void RegionTable::SetHooks(AddedHook added, RemovedHook removed) {
  std::lock_guard<std::mutex> lock(mu_);
  added_hook_ = std::move(added);
  removed_hook_ = std::move(removed);
}

Result RegionTable::Add(void* base, uint64_t length, MemoryKind kind, std::shared_ptr<const Allocation> allocation,
                        uint64_t allocation_offset, uint64_t* id) {
  auto region = std::make_unique<Region>();
  region->base = static_cast<uint8_t*>(base);
  region->length = length;
  region->kind = kind;
  region->allocation = std::move(allocation);
  region->allocation_offset = allocation_offset;
  AddedHook added;
  {
    std::lock_guard<std::mutex> lock(mu_);
    region->id = next_id_++;
    added = added_hook_;
  }
  // The hooks may pin or map memory (slow): not under the table's lock.
  if (added) LDD_RETURN_IF_ERROR(added(*region));
  std::lock_guard<std::mutex> lock(mu_);
  *id = region->id;
  regions_.emplace(region->id, std::move(region));
  return Result::Ok();
}

uint64_t RegionTable::Add(void* base, uint64_t length, MemoryKind kind) {
  uint64_t id = 0;
  Result r = Add(base, length, kind, nullptr, 0, &id);
  return r.ok() ? id : 0;
}

void RegionTable::set_removal_grace_ms(int64_t ms) {
  std::lock_guard<std::mutex> lock(mu_);
  removal_grace_ms_ = std::max<int64_t>(ms, 0);
}

size_t RegionTable::Remove(const std::vector<uint64_t>& ids, const std::function<void()>& detached) {
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<Region*> waiting;
  for (uint64_t id : ids) {
    auto it = regions_.find(id);
    if (it == regions_.end()) continue;
    waiting.push_back(it->second.get());
    removing_.push_back(std::move(it->second));
    regions_.erase(it);
  }
  if (detached) {
    lock.unlock();
    detached();
    lock.lock();
  }
  auto unused = [&] {
    return std::all_of(waiting.begin(), waiting.end(), [](const Region* r) { return r->users == 0; });
  };
  size_t cancelled = 0;
  if (!released_.wait_for(lock, std::chrono::milliseconds(removal_grace_ms_), unused)) {
    // Cancelled under the lock: a lease in `cancellable` is alive until it
    // takes the lock to release itself, so its canceller's target is too.
    std::vector<RegionLease*> done;
    for (Region* r : waiting)
      for (RegionLease* l : r->cancellable)
        if (std::find(done.begin(), done.end(), l) == done.end()) {
          l->cancel_();
          done.push_back(l);
        }
    cancelled = done.size();
    released_.wait(lock, unused);
  }
  std::vector<std::unique_ptr<Region>> gone;
  for (auto it = removing_.begin(); it != removing_.end();) {
    if (std::find(waiting.begin(), waiting.end(), it->get()) != waiting.end()) {
      gone.push_back(std::move(*it));
      it = removing_.erase(it);
    } else {
      ++it;
    }
  }
  RemovedHook removed = removed_hook_;
  lock.unlock();
  if (removed)
    for (auto& region : gone) removed(*region);
  return cancelled;
}

Result RegionTable::Resolve(const std::vector<Segment>& segments, RegionLease* lease, std::vector<iovec>* iovs) {
  lease->Release();
  std::lock_guard<std::mutex> lock(mu_);
  iovs->clear();
  iovs->reserve(segments.size());
  std::vector<Region*> used;
  Region* last = nullptr;
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& s = segments[i];
    if (last == nullptr || last->id != s.region_id) {
      auto it = regions_.find(s.region_id);
      if (it == regions_.end())
        return Result::CacheNotExist(Msg("memory region ", s.region_id, " is not registered (cache gone?)"));
      last = it->second.get();
      if (std::find(used.begin(), used.end(), last) == used.end()) used.push_back(last);
    }
    if (s.offset > last->length || s.length > last->length - s.offset)
      return Result::ParamInvalid(Msg("segment ", i, " [", s.offset, ", +", s.length, ") lies outside region ",
                                      s.region_id, " of ", last->length, " bytes"));
    iovs->push_back({last->base + s.offset, s.length});
  }
  LeaseLocked(std::move(used), lease);
  return Result::Ok();
}

Result RegionTable::Acquire(const std::vector<uint64_t>& ids, RegionLease* lease) {
  lease->Release();
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Region*> used;
  for (uint64_t id : ids) {
    auto it = regions_.find(id);
    if (it == regions_.end()) return Result::CacheNotExist(Msg("memory region ", id, " is not registered (cache gone?)"));
    used.push_back(it->second.get());
  }
  LeaseLocked(std::move(used), lease);
  return Result::Ok();
}

void RegionTable::LeaseLocked(std::vector<Region*> used, RegionLease* lease) {
  for (Region* r : used) {
    ++r->users;
    if (lease->cancel_) r->cancellable.push_back(lease);
  }
  lease->table_ = this;
  lease->regions_ = std::move(used);
}

Result RegionTable::Describe(const std::vector<uint64_t>& ids, RegionLease* lease, std::vector<Region>* out) {
  LDD_RETURN_IF_ERROR(Acquire(ids, lease));
  std::lock_guard<std::mutex> lock(mu_);
  out->clear();
  for (Region* r : lease->regions_) out->push_back(*r);
  return Result::Ok();
}

void RegionTable::ReleaseAll(RegionLease* lease) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Region* r : lease->regions_) {
    --r->users;
    if (lease->cancel_) r->cancellable.erase(std::find(r->cancellable.begin(), r->cancellable.end(), lease));
  }
  lease->regions_.clear();
  released_.notify_all();
}

size_t RegionTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return regions_.size();
}

}  // namespace lldd
