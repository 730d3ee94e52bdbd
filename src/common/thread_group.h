// Threads an instance owns: spawned for connections, joined at Finalize.
// Finished threads are joined as new ones start, so thousands of
// short-lived connections leave no thread behind. Thread-safe.
#ifndef LLM_DATADIST_SRC_COMMON_THREAD_GROUP_H_
#define LLM_DATADIST_SRC_COMMON_THREAD_GROUP_H_

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

namespace lldd {

class ThreadGroup {
 public:
  ~ThreadGroup() { JoinAll(); }
  void Spawn(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back({std::thread([fn = std::move(fn), done] {
                          fn();
                          done->store(true);
                        }),
                        done});
  }
  void JoinAll() {
    for (;;) {
      std::list<Entry> taken;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (threads_.empty()) return;
        taken.swap(threads_);
      }
      for (auto& e : taken)
        if (e.thread.joinable()) e.thread.join();
    }
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
    return threads_.size();
  }

 private:
  struct Entry {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void ReapLocked() {
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::mutex mu_;
  std::list<Entry> threads_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_THREAD_GROUP_H_
