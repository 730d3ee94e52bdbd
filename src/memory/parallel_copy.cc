#include "memory/parallel_copy.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "common/per_process.h"
#include "common/split_evenly.h"

namespace lldd {
namespace {

void CopyAll(const std::vector<CopyTask>& tasks) {
  // An empty task may carry null pointers, which memcpy must never see.
  for (const CopyTask& t : tasks)
    if (t.length != 0) std::memcpy(t.dst, t.src, t.length);
}

// A process-wide set of helper threads, started on first use and kept for
// the life of the process (they sleep when idle).
class CopyPool {
 public:
  // One helper per core (memory bandwidth of a big server needs most of
  // them), within reason.
  CopyPool() {
    unsigned cores = std::max(1U, std::thread::hardware_concurrency());
    unsigned n = std::min(cores, 64U) - 1;
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
    for (auto& t : threads_) t.detach();
  }

  unsigned helpers() const { return static_cast<unsigned>(threads_.size()); }

  // Runs jobs[1..] on helpers and jobs[0] here; returns when all are done.
  // False (nothing run) when another copy has the helpers: then the caller
  // copies alone, which beats waiting when several threads copy at once.
  bool TryRun(std::vector<std::function<void()>>& jobs) {
    std::unique_lock<std::mutex> run_lock(run_mu_, std::try_to_lock);
    if (!run_lock.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.assign(jobs.begin() + 1, jobs.end());
      outstanding_ = pending_.size();
    }
    cv_.notify_all();
    jobs[0]();
    std::unique_lock<std::mutex> lock(mu_);
    // Help with what no helper has picked up yet, then wait for the rest.
    while (!pending_.empty()) {
      auto job = std::move(pending_.back());
      pending_.pop_back();
      lock.unlock();
      job();
      lock.lock();
      --outstanding_;
    }
    done_.wait(lock, [&] { return outstanding_ == 0; });
    return true;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !pending_.empty(); });
      auto job = std::move(pending_.back());
      pending_.pop_back();
      lock.unlock();
      job();
      lock.lock();
      if (--outstanding_ == 0) done_.notify_all();
    }
  }
  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_;
  std::vector<std::function<void()>> pending_;
  size_t outstanding_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace

void RunOnCopyThreads(std::vector<std::function<void()>>& jobs) {
  if (jobs.empty()) return;
  if (jobs.size() == 1 || !PerProcess<CopyPool>::Get().TryRun(jobs))
    for (auto& job : jobs) job();
}

unsigned CopyThreadCount() { return PerProcess<CopyPool>::Get().helpers() + 1; }

void ParallelCopy(const std::vector<CopyTask>& tasks, unsigned max_threads) {
  size_t total = 0;
  for (const CopyTask& t : tasks) total += t.length;
  if (total < kParallelCopyThreshold) {
    CopyAll(tasks);
    return;
  }
  unsigned threads = CopyThreadCount();
  if (max_threads != 0) threads = std::min(threads, max_threads);
  threads = static_cast<unsigned>(std::min<size_t>(threads, total / (kParallelCopyThreshold / 4)));
  if (threads <= 1) {
    CopyAll(tasks);
    return;
  }
  auto parts = SplitEvenly(tasks, threads, [](CopyTask& t, size_t n) {
    t.dst = static_cast<uint8_t*>(t.dst) + n;
    t.src = static_cast<const uint8_t*>(t.src) + n;
  });
  std::vector<std::function<void()>> jobs;
  for (auto& p : parts)
    if (!p.empty()) jobs.push_back([&p] { CopyAll(p); });
  RunOnCopyThreads(jobs);
}

}  // namespace lldd
