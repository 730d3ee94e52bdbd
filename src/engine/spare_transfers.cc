#include "engine/spare_transfers.h"

#include <utility>

#include "common/per_thread.h"

namespace lldd {
namespace {

constexpr size_t kMaxKept = 256;        // transfers and group lists, each, per thread
constexpr size_t kMaxKeptOps = 4096;    // a list longer than this is freed

struct Pool {
  std::vector<Engine::OpsTransfer> transfers;
  std::vector<std::vector<Engine::OpsTransfer>> groups;
};

// Null on a thread whose pool is gone (per_thread.h): the allocator's then.
Pool* ThisThreadsPool() { return ThisThreads<Pool>(); }

}  // namespace

Engine::OpsTransfer SpareTransfer() {
  Pool* pool = ThisThreadsPool();
  if (pool == nullptr || pool->transfers.empty()) return {};
  Engine::OpsTransfer t = std::move(pool->transfers.back());
  pool->transfers.pop_back();
  return t;
}

std::vector<Engine::OpsTransfer> SpareGroups() {
  Pool* pool = ThisThreadsPool();
  if (pool == nullptr || pool->groups.empty()) return {};
  std::vector<Engine::OpsTransfer> g = std::move(pool->groups.back());
  pool->groups.pop_back();
  return g;
}

void RecycleGroups(std::vector<Engine::OpsTransfer>&& groups) {
  Pool* pool = ThisThreadsPool();
  if (pool == nullptr) return;
  for (Engine::OpsTransfer& t : groups) {
    if (pool->transfers.size() >= kMaxKept || t.ops.capacity() > kMaxKeptOps) continue;
    t.ops.clear();
    t.local_region_ids.clear();
    t.remote_region_ids.clear();
    pool->transfers.push_back(std::move(t));
  }
  groups.clear();
  if (pool->groups.size() < kMaxKept && groups.capacity() > 0) pool->groups.push_back(std::move(groups));
}

}  // namespace lldd
