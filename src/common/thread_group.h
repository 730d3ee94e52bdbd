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
    std::vector<std::thread> finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      TakeFinishedLocked(&finished);
      const uint64_t id = next_id_++;
      // The group outlives the thread (JoinAll joins it before the group
      // goes), so the thread may take the group's lock at its end; what
      // `fn` holds (a connection's socket, which its link counts) goes
      // first, so no wait for the lock keeps it.
      threads_.emplace(id, std::thread([this, id, fn = std::move(fn)]() mutable {
                         fn();
                         fn = nullptr;
                         std::lock_guard<std::mutex> done(mu_);
                         finished_.push_back(id);
                       }));
    }
    JoinOutsideTheLock(finished);
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
    std::vector<std::thread> finished;
    size_t live = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      TakeFinishedLocked(&finished);
      live = threads_.size();
    }
    JoinOutsideTheLock(finished);
    return live;
  }

 private:
  // Moves the threads on finished_ out of threads_, for joining without
  // the lock: many threads ending at once (a burst of connections closed)
  // would otherwise wait in turn for each other's exits.
  void TakeFinishedLocked(std::vector<std::thread>* out) {
    for (uint64_t id : finished_) {
      auto it = threads_.find(id);
      if (it == threads_.end()) continue;  // JoinAll took it
      out->push_back(std::move(it->second));
      threads_.erase(it);
    }
    finished_.clear();
  }
  // These threads have left their function and the lock: joining them
  // waits only for their exit.
  static void JoinOutsideTheLock(std::vector<std::thread>& threads) {
    for (auto& t : threads) t.join();
  }
  std::mutex mu_;
  uint64_t next_id_ = 0;
  std::unordered_map<uint64_t, std::thread> threads_;
  std::vector<uint64_t> finished_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_THREAD_GROUP_H_
