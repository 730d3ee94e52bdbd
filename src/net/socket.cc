#include "net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace lldd {
namespace {

constexpr int kIovBatch = 1024;  // IOV_MAX on Linux

void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

Result ResolveNumeric(const std::string& host, uint16_t port, sockaddr_storage* addr, socklen_t* len) {
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) return Result::ParamInvalid(Msg("'", host, "' is not a numeric IP address"));
  std::memcpy(addr, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return Result::Ok();
}

}  // namespace

void Socket::Close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void Socket::Shutdown() const {
  shut_down_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

bool IsNumericAddress(const std::string& host) {
  in_addr a4{};
  in6_addr a6{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

Result ParseHostPort(const std::string& text, std::string* host, uint16_t* port) {
  std::string h;
  std::string p;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return Result::ParamInvalid(Msg("'", text, "' is not of the form [ipv6]:port"));
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon)
      return Result::ParamInvalid(Msg("'", text, "' is not of the form ip:port"));
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (!IsNumericAddress(h)) return Result::ParamInvalid(Msg("'", h, "' is not a numeric IP address"));
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return Result::ParamInvalid(Msg("'", p, "' is not a port number"));
  unsigned long v = std::stoul(p);
  if (v > 65535) return Result::ParamInvalid(Msg("port ", v, " is out of range"));
  *host = h;
  *port = static_cast<uint16_t>(v);
  return Result::Ok();
}

Result Listen(const std::string& host, uint16_t port, Socket* out, uint16_t* bound_port) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  LDD_RETURN_IF_ERROR(ResolveNumeric(host, port, &addr, &len));
  Socket s(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Result::Failed(Msg("socket(): ", std::strerror(errno)));
  int one = 1;
  setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), len) != 0)
    return Result::Failed(Msg("cannot listen on ", host, ":", port, ": bind: ", std::strerror(errno)));
  if (::listen(s.fd(), 1024) != 0) return Result::Failed(Msg("listen(): ", std::strerror(errno)));
  SetNonBlocking(s.fd());
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(s.fd(), reinterpret_cast<sockaddr*>(&bound), &blen);
  *bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  *out = std::move(s);
  return Result::Ok();
}

Result Accept(const Socket& listener, Socket* out, std::string* peer) {
  for (;;) {
    pollfd p{listener.fd(), POLLIN, 0};
    int rc = ::poll(&p, 1, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return Result::Failed(Msg("poll(listener): ", std::strerror(errno)));
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) {
      *out = Socket();
      return Result::Ok();
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EINVAL) {  // shut down
        *out = Socket();
        return Result::Ok();
      }
      if (errno == EMFILE || errno == ENFILE) {
        ::usleep(10000);  // out of descriptors: back off instead of spinning
        continue;
      }
      return Result::Failed(Msg("accept(): ", std::strerror(errno)));
    }
    char text[INET6_ADDRSTRLEN] = "?";
    if (addr.ss_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, text, sizeof(text));
    else if (addr.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, text, sizeof(text));
    *peer = text;
    *out = Socket(fd);
    return Result::Ok();
  }
}

Result Connect(const std::string& host, uint16_t port, const std::string& local_host, Deadline deadline,
               Socket* out) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  LDD_RETURN_IF_ERROR(ResolveNumeric(host, port, &addr, &len));
  Socket s(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s.valid()) return Result::LinkFailed(Msg("socket(): ", std::strerror(errno)));
  if (!local_host.empty()) {
    sockaddr_storage local{};
    socklen_t llen = 0;
    LDD_RETURN_IF_ERROR(ResolveNumeric(local_host, 0, &local, &llen));
    if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&local), llen) != 0)
      return Result::LinkFailed(Msg("cannot bind local address ", local_host, ": ", std::strerror(errno)));
  }
  int rc = ::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), len);
  if (rc != 0 && errno != EINPROGRESS)
    return Result::LinkFailed(Msg("connect to ", host, ":", port, ": ", std::strerror(errno)));
  if (rc != 0) {
    if (!WaitForEvents(s.fd(), POLLOUT, deadline))
      return Result::Timeout(Msg("connect to ", host, ":", port, " timed out"));
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return Result::LinkFailed(Msg("connect to ", host, ":", port, ": ", std::strerror(err)));
  }
  TuneForTransfer(s.fd());
  *out = std::move(s);
  return Result::Ok();
}

namespace {

bool IsLoopback(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr) >> 24) == 127;
  if (a.ss_family != AF_INET6) return false;
  const in6_addr& v6 = reinterpret_cast<const sockaddr_in6&>(a).sin6_addr;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

}  // namespace

bool SameHost(const sockaddr_storage& local, const sockaddr_storage& peer) {
  if (IsLoopback(local) && IsLoopback(peer)) return true;
  if (local.ss_family != peer.ss_family) return false;
  if (local.ss_family == AF_INET)
    return reinterpret_cast<const sockaddr_in&>(local).sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in&>(peer).sin_addr.s_addr;
  if (local.ss_family == AF_INET6)
    return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(local).sin6_addr,
                       &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, sizeof(in6_addr)) == 0;
  return false;
}

void TuneForTransfer(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_storage local{};
  sockaddr_storage peer{};
  socklen_t local_len = sizeof(local);
  socklen_t peer_len = sizeof(peer);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 || !SameHost(local, peer))
    return;
  const int bytes = kSameHostSocketBuffer;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

void EnableKeepAlive(int fd, int idle_s, int interval_s, int count) {
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  // Unacknowledged data (a peer that vanished mid-transfer) also ends the
  // connection, not only idleness.
  unsigned int user_timeout_ms = static_cast<unsigned int>((idle_s + interval_s * count) * 1000);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
}

void IovCursor::Advance(size_t bytes) {
  remaining_ -= std::min<uint64_t>(bytes, remaining_);
  while (bytes > 0 && index_ < iovs_.size()) {
    iovec& v = iovs_[index_];
    if (bytes < v.iov_len) {
      v.iov_base = static_cast<char*>(v.iov_base) + bytes;
      v.iov_len -= bytes;
      return;
    }
    bytes -= v.iov_len;
    v.iov_len = 0;
    ++index_;
  }
  SkipEmpty();
}

namespace {

// Clears O_NONBLOCK and sets the receive timeout to the deadline for the
// scope's life; the flags are put back after.
class BlockingUntil {
 public:
  BlockingUntil(int fd, Deadline deadline) : fd_(fd), flags_(fcntl(fd, F_GETFL, 0)) {
    const int left = deadline.RemainingMillisForPoll();  // -1: never; 0 in the timeval means never
    const int64_t ms = left < 0 ? 0 : std::max(1, left);
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    ok_ = flags_ >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
          fcntl(fd, F_SETFL, flags_ & ~O_NONBLOCK) == 0;
  }
  ~BlockingUntil() {
    if (flags_ >= 0) fcntl(fd_, F_SETFL, flags_);
  }
  bool ok() const { return ok_; }

 private:
  int fd_;
  int flags_;
  bool ok_ = false;
};

// One recvmsg into what is left of the cursor (its first kIovBatch entries).
IoStep ReceiveInto(int fd, IovCursor& cursor, int flags) {
  int n = 0;
  msghdr msg{};
  msg.msg_iov = cursor.Next(kIovBatch, &n);
  msg.msg_iovlen = static_cast<size_t>(n);
  const ssize_t rc = ::recvmsg(fd, &msg, flags);
  if (rc > 0) {
    cursor.Advance(static_cast<size_t>(rc));
    return IoStep::kProgress;
  }
  if (rc == 0) return IoStep::kClosed;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return IoStep::kWouldBlock;
  return errno == ECONNRESET ? IoStep::kClosed : IoStep::kError;
}

}  // namespace

IoStep SendSome(int fd, IovCursor& cursor) {
  int n = 0;
  msghdr msg{};
  msg.msg_iov = cursor.Next(kIovBatch, &n);
  msg.msg_iovlen = static_cast<size_t>(n);
  ssize_t rc = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (rc > 0) {
    cursor.Advance(static_cast<size_t>(rc));
    return IoStep::kProgress;
  }
  if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return IoStep::kWouldBlock;
  return (rc < 0 && errno == EPIPE) ? IoStep::kClosed : IoStep::kError;
}

IoStep RecvSome(int fd, IovCursor& cursor) { return ReceiveInto(fd, cursor, MSG_DONTWAIT); }

IoStep RecvWaiting(int fd, IovCursor& cursor, Deadline deadline) {
  BlockingUntil blocking(fd, deadline);
  if (!blocking.ok()) return IoStep::kError;
  return ReceiveInto(fd, cursor, MSG_WAITALL);
}

IoStep RecvSomeThenWait(int fd, IovCursor& cursor, Deadline deadline) {
  IoStep step = RecvSome(fd, cursor);
  if (step != IoStep::kProgress && step != IoStep::kWouldBlock) return step;
  if (cursor.Remaining() < kWaitingReceiveMinBytes || deadline.Expired()) return step;
  IoStep waited = RecvWaiting(fd, cursor, deadline);
  return waited == IoStep::kWouldBlock ? step : waited;
}

Result SendAll(int fd, IovCursor& cursor, Deadline deadline) {
  while (!cursor.done()) {
    IoStep step = SendSome(fd, cursor);
    if (step == IoStep::kProgress) continue;
    if (step == IoStep::kWouldBlock) {
      if (!WaitForEvents(fd, POLLOUT, deadline)) return Result::Timeout("send timed out");
      continue;
    }
    return Result::LinkFailed(step == IoStep::kClosed ? "connection closed by peer"
                                                      : Msg("send failed: ", std::strerror(errno)));
  }
  return Result::Ok();
}

Result RecvAll(int fd, IovCursor& cursor, Deadline deadline) {
  while (!cursor.done()) {
    IoStep step = RecvSomeThenWait(fd, cursor, deadline);
    if (step == IoStep::kProgress) continue;
    if (step == IoStep::kWouldBlock) {
      if (!WaitForEvents(fd, POLLIN, deadline)) return Result::Timeout("receive timed out");
      continue;
    }
    return Result::LinkFailed(step == IoStep::kClosed ? "connection closed by peer"
                                                      : Msg("receive failed: ", std::strerror(errno)));
  }
  return Result::Ok();
}

Result SendAll(int fd, const void* data, size_t len, Deadline deadline) {
  IovCursor c;
  c.Append(const_cast<void*>(data), len);
  return SendAll(fd, c, deadline);
}

Result RecvAll(int fd, void* data, size_t len, Deadline deadline) {
  IovCursor c;
  c.Append(data, len);
  return RecvAll(fd, c, deadline);
}

bool WaitReadable(int fd, Deadline deadline) { return WaitForEvents(fd, POLLIN, deadline); }

bool WaitForEvents(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, deadline.RemainingMillisForPoll());
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;
  }
}

}  // namespace lldd
