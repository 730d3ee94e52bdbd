#include "hixl/connect_pool.h"

namespace lldd::hixl_impl {

ConnectPool::ConnectPool(uint32_t threads, uint32_t capacity) : capacity_(capacity) {
  for (uint32_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

Result ConnectPool::Submit(const std::string& key, std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return Result::Failed("the connection pool is stopped");
  if (queue_.size() >= capacity_)
    return Result::OutOfMemory(Msg("the connection task queue is full (", capacity_,
                                   " tasks; GlobalResourceConfig connect_pool.task_queue_capacity)"));
  queue_.push_back({key, std::move(task)});
  cv_.notify_all();
  return Result::Ok();
}

void ConnectPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // The oldest task whose remote has nothing running: per-remote order.
    auto next = queue_.end();
    cv_.wait(lock, [&] {
      if (stopping_) return true;
      next = queue_.begin();
      std::set<std::string> seen;  // an older queued task of a key goes first
      for (; next != queue_.end(); ++next) {
        if (!running_.count(next->key) && !seen.count(next->key)) return true;
        seen.insert(next->key);
      }
      return false;
    });
    if (stopping_) return;
    Task task = std::move(*next);
    queue_.erase(next);
    running_.insert(task.key);
    lock.unlock();
    task.run();
    lock.lock();
    running_.erase(task.key);
    cv_.notify_all();
  }
}

void ConnectPool::Stop(const std::function<void(const std::string& key)>& dropped) {
  std::deque<Task> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    left.swap(queue_);
    cv_.notify_all();
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  if (dropped)
    for (const auto& t : left) dropped(t.key);
}

}  // namespace lldd::hixl_impl
