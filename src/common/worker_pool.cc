#include "common/worker_pool.h"

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "common/per_process.h"

namespace lldd {
namespace {

// Enough for every connection of several wide transfers at once; jobs
// beyond it wait for a worker rather than adding threads without bound.
constexpr size_t kMaxWorkers = 256;

struct Batch {
  std::mutex mu;
  std::condition_variable done;
  size_t outstanding = 0;
};

class WorkerPool {
 public:
  void Submit(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
    if (idle_ >= queue_.size() || workers_ >= kMaxWorkers) {
      cv_.notify_one();
      return;
    }
    ++workers_;
    std::thread([this] { Loop(); }).detach();
  }

  size_t workers() {
    std::lock_guard<std::mutex> lock(mu_);
    return workers_;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [&] { return !queue_.empty(); });
      --idle_;
      auto job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t workers_ = 0;
  size_t idle_ = 0;
};

}  // namespace

void RunAll(std::vector<std::function<void()>>& jobs) {
  if (jobs.empty()) return;
  auto batch = std::make_shared<Batch>();
  batch->outstanding = jobs.size() - 1;
  for (size_t i = 1; i < jobs.size(); ++i) {
    PerProcess<WorkerPool>::Get().Submit([batch, &job = jobs[i]] {
      job();
      std::lock_guard<std::mutex> lock(batch->mu);
      if (--batch->outstanding == 0) batch->done.notify_all();
    });
  }
  jobs[0]();
  std::unique_lock<std::mutex> lock(batch->mu);
  batch->done.wait(lock, [&] { return batch->outstanding == 0; });
}

size_t WorkerCount() { return PerProcess<WorkerPool>::Get().workers(); }

}  // namespace lldd
