#include "transport/tcp/connection_pool.h"

#include <algorithm>

namespace lldd {
namespace {
// How long past its dial deadline a promised connection may still arrive.
constexpr auto kPromiseGrace = std::chrono::seconds(2);
}  // namespace

ConnectionPool::ConnectionPool(size_t max_connections, Dialer dialer)
    : max_(std::max<size_t>(1, max_connections)), dialer_(std::move(dialer)) {}

void ConnectionPool::ExpirePromisesLocked() {
  const auto now = std::chrono::steady_clock::now();
  while (!promises_.empty() && promises_.front() < now) promises_.pop_front();
}

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
    ExpirePromisesLocked();
    if (!idle_.empty()) {
      out->push_back(std::move(idle_.back()));
      idle_.pop_back();
      continue;
    }
    if (InFlightLocked() < limit) {
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
      } else if (early_offers_ > 0) {
        --early_offers_;  // the peer's connection beat the dialer's return
      } else {
        promises_.push_back(deadline.when() + kPromiseGrace);
      }
      continue;
    }
    if (!out->empty()) break;  // some parallelism now beats more later
    // Wake up when the oldest promise would expire, to reclaim its slot.
    auto until = deadline.when();
    if (!promises_.empty()) until = std::min(until, promises_.front());
    cv_.wait_until(lock, until, [&] { return closed_ || !idle_.empty() || InFlightLocked() < limit; });
    if (deadline.Expired() && idle_.empty()) {
      ExpirePromisesLocked();
      if (InFlightLocked() >= limit || closed_) {
        if (closed_) break;
        return Result::Timeout("no data connection became free in time");
      }
    }
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
  if (!promises_.empty()) {
    promises_.pop_front();
  } else if (dialing_ > 0) {
    ++early_offers_;
  }
  // Late arrivals (their promise expired) are kept only while the pool has
  // room: the idle list never grows past the burst width.
  if (owned_ >= 2 * max_ || idle_.size() >= max_) {
    socket->Shutdown();
    return;
  }
  TrackLocked(socket);
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

size_t ConnectionPool::owned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return owned_;
}

size_t ConnectionPool::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_.size();
}

size_t ConnectionPool::promised() const {
  std::lock_guard<std::mutex> lock(mu_);
  return promises_.size();
}

}  // namespace lldd
