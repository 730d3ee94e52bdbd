#include "transport/tcp/connection_pool.h"

#include <algorithm>

namespace lldd {

ConnectionPool::ConnectionPool(size_t max_connections, Dialer dialer)
    : max_(std::max<size_t>(1, max_connections)), dialer_(std::move(dialer)) {}

Result ConnectionPool::Acquire(size_t want, Deadline deadline, std::vector<SocketPtr>* out) {
  out->clear();
  want = std::clamp<size_t>(want, 1, max_);
  // A single-connection (small) request may open connections beyond the
  // striping width, so that it never queues behind a large transfer that
  // holds them all.
  const size_t limit = want == 1 ? 2 * max_ : max_;
  std::unique_lock<std::mutex> lock(mu_);
  while (out->size() < want) {
    if (closed_) break;
    if (!idle_.empty()) {
      out->push_back(std::move(idle_.back()));
      idle_.pop_back();
      continue;
    }
    if (owned_ + dialing_ + promised_ < limit) {
      ++dialing_;
      lock.unlock();
      SocketPtr dialed;
      Result r = dialer_(deadline, &dialed);
      lock.lock();
      --dialing_;
      cv_.notify_all();
      if (!r.ok()) {
        if (out->empty()) return r;
        break;
      }
      if (dialed) {
        TrackLocked(dialed);
        ++owned_;
        out->push_back(std::move(dialed));
      } else {
        ++promised_;
      }
      continue;
    }
    if (!out->empty()) break;  // some parallelism now beats more later
    if (!cv_.wait_until(lock, deadline.when(),
                        [&] { return closed_ || !idle_.empty() || owned_ + dialing_ + promised_ < limit; }))
      return Result::Timeout("no data connection became free in time");
  }
  if (closed_) {
    for (auto& s : *out) s->Shutdown();
    out->clear();
    return Result::LinkFailed("the link is closed");
  }
  return Result::Ok();
}

void ConnectionPool::Release(SocketPtr socket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || idle_.size() >= max_) {
    // Closed, or a burst connection beyond the usual width: let it go.
    socket->Shutdown();
    --owned_;
  } else {
    idle_.push_back(std::move(socket));
  }
  cv_.notify_all();
}

void ConnectionPool::Discard(const SocketPtr& socket) {
  socket->Shutdown();
  std::lock_guard<std::mutex> lock(mu_);
  --owned_;
  cv_.notify_all();
}

void ConnectionPool::Offer(SocketPtr socket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    socket->Shutdown();
    return;
  }
  TrackLocked(socket);
  if (promised_ > 0) --promised_;
  idle_.push_back(std::move(socket));
  ++owned_;
  cv_.notify_all();
}

void ConnectionPool::TrackLocked(const SocketPtr& socket) {
  all_.erase(std::remove_if(all_.begin(), all_.end(), [](const std::weak_ptr<Socket>& w) { return w.expired(); }),
             all_.end());
  all_.push_back(socket);
}

void ConnectionPool::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  for (auto& w : all_)
    if (auto s = w.lock()) s->Shutdown();
  owned_ -= idle_.size();
  idle_.clear();
  cv_.notify_all();
}

}  // namespace lldd
