// The asynchronous requests' handles, by id: what GetTransferStatus looks
// up. Ids are given in rising order and callers mostly query (and so
// release) them oldest first, so the table is a deque sorted by id:
// inserting appends, a lookup is a binary search, and releasing the
// oldest pops the front; a released entry elsewhere leaves a hole that a
// later compaction removes (holes never outnumber live entries by much).
// Unlike a tree it allocates no node per request. Not thread-safe (the
// transfer queue holds its handles lock).
#ifndef LLM_DATADIST_SRC_ENGINE_HANDLE_TABLE_H_
#define LLM_DATADIST_SRC_ENGINE_HANDLE_TABLE_H_

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <deque>
#include <utility>

namespace lldd {

// T: a pointer-like value whose empty state (T{}) marks a hole.
template <typename T>
class HandleTable {
 public:
  // `id` above every id inserted before; `value` not empty.
  void Insert(uint64_t id, T value) {
    assert(entries_.empty() || entries_.back().id < id);
    entries_.push_back({id, std::move(value)});
    ++live_;
  }

  // Null if `id` is not in the table (never inserted, or erased).
  T* Find(uint64_t id) {
    // Most lookups are of the oldest handle: no search then.
    if (!entries_.empty() && entries_.front().id == id) return entries_.front().value ? &entries_.front().value : nullptr;
    auto it = std::lower_bound(entries_.begin(), entries_.end(), id,
                               [](const Entry& e, uint64_t wanted) { return e.id < wanted; });
    if (it == entries_.end() || it->id != id || !it->value) return nullptr;
    return &it->value;
  }

  void Erase(uint64_t id) {
    if (T* value = Find(id)) {
      *value = T{};
      --live_;
      Compact();
    }
  }

  size_t size() const { return live_; }

  // Visits the entries in id order while `visit(id, value)` returns true;
  // an entry whose value the visitor emptied is erased.
  template <typename Visit>
  void Scan(Visit visit) {
    for (Entry& e : entries_) {
      if (!e.value) continue;
      const bool go_on = visit(e.id, e.value);
      if (!e.value) --live_;
      if (!go_on) break;
    }
    Compact();
  }

 private:
  struct Entry {
    uint64_t id;
    T value;
  };

  void Compact() {
    while (!entries_.empty() && !entries_.front().value) entries_.pop_front();
    if (entries_.size() > 2 * live_ + kSlack)
      entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [](const Entry& e) { return !e.value; }),
                     entries_.end());
  }

  static constexpr size_t kSlack = 64;  // holes tolerated beyond the live count before compacting
  std::deque<Entry> entries_;  // sorted by id
  size_t live_ = 0;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_HANDLE_TABLE_H_
