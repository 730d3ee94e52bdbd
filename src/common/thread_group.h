// Threads an instance owns: spawned for connections, joined at Finalize.
// Finished threads are joined as new ones start, so thousands of
// short-lived connections leave no thread behind. Thread-safe; a thread of
// the group may spawn others.
//
// A finishing thread names itself on a list, so that a spawn joins only
// the threads that finished rather than looking at every live one: a
// server holding thousands of links spawns a thread per new connection.
#ifndef LLM_DATADIST_SRC_COMMON_THREAD_GROUP_H_
#define LLM_DATADIST_SRC_COMMON_THREAD_GROUP_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace lldd {

class ThreadGroup {
 public:
  ~ThreadGroup() { JoinAll(); }
  void Spawn(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
    const uint64_t id = next_id_++;
    // The group outlives the thread (JoinAll joins it before the group
    // goes), so the thread may still take the group's lock at its end.
    threads_.emplace(id, std::thread([this, id, fn = std::move(fn)] {
                       fn();
                       std::lock_guard<std::mutex> done(mu_);
                       finished_.push_back(id);
                     }));
  }
  void JoinAll() {
    for (;;) {
      std::unordered_map<uint64_t, std::thread> taken;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (threads_.empty()) {
          finished_.clear();  // only threads already joined are named there
          return;
        }
        taken.swap(threads_);
      }
      for (auto& [id, thread] : taken)
        if (thread.joinable()) thread.join();
    }
  }
  // Threads not yet joined (finished ones are joined first).
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
    return threads_.size();
  }

 private:
  // A thread on finished_ has left its function and the lock: joining it
  // waits only for its exit.
  void ReapLocked() {
    for (uint64_t id : finished_) {
      auto it = threads_.find(id);
      if (it == threads_.end()) continue;  // JoinAll took it
      it->second.join();
      threads_.erase(it);
    }
    finished_.clear();
  }
  std::mutex mu_;
  uint64_t next_id_ = 0;
  std::unordered_map<uint64_t, std::thread> threads_;
  std::vector<uint64_t> finished_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_THREAD_GROUP_H_
