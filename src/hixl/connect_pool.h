// The workers behind ConnectAsync/DisconnectAsync: a fixed number of
// threads and a bounded queue (GlobalResourceConfig connect_pool.thread_num
// and connect_pool.task_queue_capacity). Tasks for the same remote engine
// run one at a time in submission order; tasks for different ones run in
// parallel. Thread-safe.
#ifndef LLM_DATADIST_SRC_HIXL_CONNECT_POOL_H_
#define LLM_DATADIST_SRC_HIXL_CONNECT_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"

namespace lldd::hixl_impl {

class ConnectPool {
 public:
  ConnectPool(uint32_t threads, uint32_t capacity);
  ~ConnectPool() { Stop(); }

  // Queues `task` for `key`; RESOURCE_EXHAUSTED (LLM_OUT_OF_MEMORY) when the
  // queue is full, FAILED once stopped.
  Result Submit(const std::string& key, std::function<void()> task);
  // Drops queued tasks (each gets its `dropped` call, in order) and waits
  // for running ones.
  void Stop(const std::function<void(const std::string& key)>& dropped = nullptr);

 private:
  void Work();

  struct Task {
    std::string key;
    std::function<void()> run;
  };
  const uint32_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  std::set<std::string> running_;  // keys with a task in progress
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace lldd::hixl_impl

#endif  // LLM_DATADIST_SRC_HIXL_CONNECT_POOL_H_
