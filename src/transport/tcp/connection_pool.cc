#include "transport/tcp/connection_pool.h"

#include <algorithm>

namespace lldd {
namespace {
// How long past its dial deadline a promised connection may still arrive.
constexpr auto kPromiseGrace = std::chrono::seconds(2);
// A peer that says LINK_BUSY is still ending the serving threads of
// connections we gave up on (after a timed-out burst, dozens end at once):
// asking again shortly succeeds, so the wait grows from a millisecond to this.
constexpr auto kMaxBusyBackoff = std::chrono::milliseconds(64);
}  // namespace

ConnectionPool::ConnectionPool(size_t max_connections, Dialer dialer)
    : max_(std::max<size_t>(1, max_connections)), dialer_(std::move(dialer)) {}

ConnectionPool::ConnectionPool(size_t max_connections, SimpleDialer dialer)
    : ConnectionPool(max_connections, [d = std::move(dialer)](Deadline deadline, uint64_t, SocketPtr* out) {
        return d(deadline, out);
      }) {}

void ConnectionPool::ExpirePromisesLocked() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = promises_.begin(); it != promises_.end();) it = it->second < now ? promises_.erase(it) : ++it;
}

Result ConnectionPool::Acquire(size_t want, Deadline deadline, std::vector<SocketPtr>* out) {
  out->clear();
  want = std::clamp<size_t>(want, 1, max_);
  // A single-connection (small) request may open connections beyond the
  // striping width, so that it never queues behind a large transfer that
  // holds them all.
  const size_t limit = want == 1 ? 2 * max_ : max_;
  std::vector<uint64_t> mine;  // reverse dials of this request, not yet offered
  auto busy_backoff = std::chrono::milliseconds(1);
  std::unique_lock<std::mutex> lock(mu_);
  auto awaited = [&] {
    return static_cast<size_t>(std::count_if(mine.begin(), mine.end(), [&](uint64_t id) { return promises_.count(id); }));
  };
  while (out->size() < want) {
    if (closed_) break;
    ExpirePromisesLocked();
    if (!idle_.empty()) {
      out->push_back(std::move(idle_.back()));
      idle_.pop_back();
      continue;
    }
    // Dial only for what this request still lacks: a reverse dial returns
    // empty-handed, and its connection arrives as an Offer.
    if (out->size() + awaited() < want && InFlightLocked() < limit) {
      const uint64_t id = next_dial_id_++;
      promises_[id] = deadline.when() + kPromiseGrace;
      lock.unlock();
      SocketPtr dialed;
      Result r = dialer_(deadline, id, &dialed);
      lock.lock();
      cv_.notify_all();
      if (dialed || !r.ok()) promises_.erase(id);  // a failed dial's connection arriving later is a late one
      // Closed while dialing: whatever the dial said (often BUSY or a reset
      // caused by the close itself), the answer is that the link is gone.
      if (closed_) {
        if (dialed) dialed->Shutdown();
        break;
      }
      if (!r.ok() && !out->empty()) break;
      if (r.code() == llm_datadist::LLM_LINK_BUSY && out->empty() && !closed_) {
        // Busy is transient (see kMaxBusyBackoff): ask again until the
        // deadline, waking early for a connection released meanwhile.
        const auto retry_at = std::chrono::steady_clock::now() + busy_backoff;
        if (retry_at >= deadline.when()) return r;
        busy_backoff = std::min<std::chrono::milliseconds>(2 * busy_backoff, kMaxBusyBackoff);
        cv_.wait_until(lock, retry_at);
        continue;
      }
      if (!r.ok()) return r;
      if (dialed) {
        TrackLocked(dialed);
        ++owned_;
        out->push_back(std::move(dialed));
      } else {
        mine.push_back(id);
      }
      continue;
    }
    if (!out->empty()) break;  // some parallelism now beats more later
    // Wake up when the oldest promise would expire, to reclaim its slot.
    auto until = deadline.when();
    for (const auto& [id, expiry] : promises_) until = std::min(until, expiry);
    cv_.wait_until(lock, until);
    if (deadline.Expired() && idle_.empty() && !closed_) {
      if (!out->empty()) break;
      return Result::Timeout("no data connection became free in time");
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

void ConnectionPool::Offer(SocketPtr socket, uint64_t dial_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    socket->Shutdown();
    return;
  }
  auto it = dial_id != 0 ? promises_.find(dial_id) : promises_.begin();
  if (it != promises_.end()) promises_.erase(it);
  // Late arrivals (their promise expired) are kept only while the pool has
  // room: the idle list never grows past the width.
  if (owned_ >= 2 * max_ || idle_.size() >= max_) {
    socket->Shutdown();
    cv_.notify_all();
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
