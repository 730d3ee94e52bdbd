// Idle data connections of one link, handed out for the length of one
// request. A connection comes back either clean (Release: ready for the
// next request) or suspect (Discard: closed, because bytes of a failed or
// timed-out request may still be in flight on it).
//
// New connections come from a dialer: the connecting side of a link dials
// itself, the accepting side asks its peer to dial in. Either way they
// arrive through Offer(). Thread-safe.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TCP_CONNECTION_POOL_H_
#define LLM_DATADIST_SRC_TRANSPORT_TCP_CONNECTION_POOL_H_

#include <condition_variable>
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
  // `*out`, or it leaves `*out` empty and the connection arrives later
  // through Offer() (when the peer dials in on our request).
  using Dialer = std::function<Result(Deadline, SocketPtr* out)>;

  ConnectionPool(size_t max_connections, Dialer dialer);

  // Hands out between 1 and `want` connections; dials new ones while below
  // the maximum, waits for a released one otherwise. A request for one
  // connection may go up to twice the maximum (see the .cc).
  Result Acquire(size_t want, Deadline deadline, std::vector<SocketPtr>* out);
  void Release(SocketPtr socket);
  void Discard(const SocketPtr& socket);
  void Offer(SocketPtr socket);
  // Shuts every connection down, idle or in use; later Acquire()s fail.
  void Close();
  size_t max_connections() const { return max_; }

 private:
  void TrackLocked(const SocketPtr& socket);
  const size_t max_;
  Dialer dialer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SocketPtr> idle_;
  std::vector<std::weak_ptr<Socket>> all_;
  size_t owned_ = 0;    // idle + in use
  size_t dialing_ = 0;
  size_t promised_ = 0;  // dialed by the peer, not yet offered
  bool closed_ = false;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_CONNECTION_POOL_H_
