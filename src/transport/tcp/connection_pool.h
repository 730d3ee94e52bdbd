// Idle data connections of one link, handed out for the length of one
// request. A connection comes back either clean (Release: ready for the
// next request) or suspect (Discard: closed, because bytes of a failed or
// timed-out request may still be in flight on it).
//
// New connections come from a dialer: the connecting side of a link dials
// itself, the accepting side asks its peer to dial in (a "promise"): that
// connection arrives through Offer() with its dial's id, possibly before the
// dialer returns. A promise not kept by its deadline (plus a grace period)
// expires, so a lost connection never holds a slot for good. Thread-safe.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TCP_CONNECTION_POOL_H_
#define LLM_DATADIST_SRC_TRANSPORT_TCP_CONNECTION_POOL_H_

#include <chrono>
#include <condition_variable>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "net/socket.h"

namespace lldd {

using SocketPtr = std::shared_ptr<Socket>;

class ConnectionPool {
 public:
  // Establishes one more connection. Either it returns the connection in
  // `*out`, or it leaves `*out` empty and the connection arrives through
  // Offer() with the same `dial_id` (when the peer dials in on our
  // request), possibly before the dialer returns.
  using Dialer = std::function<Result(Deadline, uint64_t dial_id, SocketPtr* out)>;
  using SimpleDialer = std::function<Result(Deadline, SocketPtr* out)>;

  ConnectionPool(size_t max_connections, Dialer dialer);
  // A dialer that ignores dial ids (its Offer()s match the oldest promise).
  ConnectionPool(size_t max_connections, SimpleDialer dialer);

  // Hands out between 1 and `want` connections; dials new ones while below
  // the maximum, waits for a released one otherwise. A request for one
  // connection may go up to twice the maximum (see the .cc). A dial the
  // peer refuses as LLM_LINK_BUSY is tried again, backing off, until the
  // deadline; any other failed dial is returned at once.
  Result Acquire(size_t want, Deadline deadline, std::vector<SocketPtr>* out);
  void Release(SocketPtr socket);
  void Discard(const SocketPtr& socket);
  // A connection the peer dialed for dial `dial_id` (0: for whichever
  // promise is oldest).
  void Offer(SocketPtr socket, uint64_t dial_id = 0);
  // Shuts every connection down, idle or in use; later Acquire()s fail.
  void Close();
  size_t max_connections() const { return max_; }
  // For tests: connections owned (idle or in use), idle, and promised.
  size_t owned() const;
  size_t idle() const;
  size_t promised() const;

 private:
  void TrackLocked(const SocketPtr& socket);
  void ExpirePromisesLocked();
  size_t InFlightLocked() const { return owned_ + promises_.size(); }
  const size_t max_;
  Dialer dialer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SocketPtr> idle_;
  std::vector<std::weak_ptr<Socket>> all_;
  size_t owned_ = 0;  // idle + in use
  // Dials in progress and connections the peer dials for us, not yet
  // offered: by dial id, when each expires.
  std::map<uint64_t, std::chrono::steady_clock::time_point> promises_;
  uint64_t next_dial_id_ = 1;
  bool closed_ = false;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_CONNECTION_POOL_H_
