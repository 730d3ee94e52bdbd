// Thin, deadline-aware wrappers over POSIX TCP sockets.
//
// Every socket made here is non-blocking; blocking behaviour comes from
// poll() with the caller's deadline, or for a large receive from a receive
// timeout set to that deadline (RecvWaiting), so no call can hang past it,
// and shutdown() from another thread wakes a waiter at once.
#ifndef LLM_DATADIST_SRC_NET_SOCKET_H_
#define LLM_DATADIST_SRC_NET_SOCKET_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <algorithm>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"

namespace lldd {

// Owns a file descriptor; closes it on destruction.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() { Close(); }
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept {
    if (this != &o) {
      Close();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Close();
  // Wakes every thread blocked on this socket; the fd stays open.
  void Shutdown() const;
  // Shutdown() was called (listening Unix sockets are not woken by it, so
  // their accept loops poll this flag).
  bool shut_down() const { return shut_down_.load(); }

 private:
  int fd_ = -1;
  mutable std::atomic<bool> shut_down_{false};
};

// Splits "ip:port" or "[ipv6]:port". The address must be numeric.
Result ParseHostPort(const std::string& text, std::string* host, uint16_t* port);
bool IsNumericAddress(const std::string& host);

Result Listen(const std::string& host, uint16_t port, Socket* out, uint16_t* bound_port);
// Accepts one connection; returns an invalid socket (and ok) when the
// listener was shut down.
Result Accept(const Socket& listener, Socket* out, std::string* peer);
Result Connect(const std::string& host, uint16_t port, const std::string& local_host, Deadline deadline,
               Socket* out);
// For a connected socket: no Nagle delay; and when both ends are on this
// host (SameHost), socket buffers of kSameHostSocketBuffer.
void TuneForTransfer(int fd);
// A connection between these two addresses stays on this host: they are
// equal, or both loopback addresses (IPv4, IPv6, IPv4-mapped IPv6).
bool SameHost(const sockaddr_storage& local, const sockaddr_storage& peer);
// Over the loopback device the bytes queued in a connection's socket
// buffers are bytes in memory, and kernel autotuning lets them grow to
// several MiB per connection; with a few connections streaming at once
// that outgrows the caches the copies run from, most of all when other
// work shares them. A quarter MiB per buffer (the kernel doubles it for its
// bookkeeping; 512 KiB in flight is about 50 us of a loopback stream) keeps
// each queue small. On a 2-core VM with busy neighbours, 1 MiB reads with
// 64 in flight went from 4.3-4.7 to 6.1-7.5 GB/s; when it was quiet, both
// read 5.7-7.6. Connections to another host keep autotuning, which a long
// fat link needs.
constexpr int kSameHostSocketBuffer = 256 << 10;
void EnableKeepAlive(int fd, int idle_s, int interval_s, int count);

// A position within a list of buffers; the unit of scatter/gather I/O.
// The entries are consumed in place (the first one left always describes
// exactly its unsent part), so a system call takes them straight from here:
// no copy into a stack array, which cost every I/O thread 16 KiB of touched
// stack (stack-clash probing touches each page of a large frame) and, at
// thousands of links, most of a link's resident memory.
class IovCursor {
 public:
  IovCursor() = default;
  explicit IovCursor(std::vector<iovec> iovs) : iovs_(std::move(iovs)) {
    for (const iovec& v : iovs_) remaining_ += v.iov_len;
    SkipEmpty();
  }
  void Append(void* base, size_t len) {
    if (len > 0) iovs_.push_back({base, len});
    remaining_ += len;
  }
  bool done() const { return index_ >= iovs_.size(); }
  // What is left, as entries for sendmsg/recvmsg: at most `max` of them.
  iovec* Next(int max, int* count) {
    *count = static_cast<int>(std::min<size_t>(iovs_.size() - index_, static_cast<size_t>(max)));
    return iovs_.data() + index_;
  }
  void Advance(size_t bytes);
  uint64_t Remaining() const { return remaining_; }

 private:
  void SkipEmpty() {
    while (index_ < iovs_.size() && iovs_[index_].iov_len == 0) ++index_;
  }
  std::vector<iovec> iovs_;
  size_t index_ = 0;
  uint64_t remaining_ = 0;
};

// Outcome of one non-blocking step of I/O.
enum class IoStep { kProgress, kWouldBlock, kClosed, kError };

IoStep SendSome(int fd, IovCursor& cursor);
IoStep RecvSome(int fd, IovCursor& cursor);
// Receives into the cursor by one recvmsg(MSG_WAITALL) that sleeps in the
// kernel until the cursor (or its first 1024 entries) is full, the deadline
// passes, the peer closes or another thread shuts the socket down; the
// socket is non-blocking again when it returns. kWouldBlock: nothing came
// before the deadline (or a signal). For one large receive on a thread of
// its own: poll() and RecvSome take three system calls per wakeup (poll,
// the receive, the receive that finds the queue empty), which a
// paravirtualized guest pays dearly for (2-core VM, 1 MiB reads with 64 in
// flight: 6.2-7.1 GB/s polling, 6.6-9.8 waiting). A small receive should
// not: the flag changes cost three calls of their own.
IoStep RecvWaiting(int fd, IovCursor& cursor, Deadline deadline);
// RecvSome, then RecvWaiting while at least kWaitingReceiveMinBytes are
// still to come (and the deadline has not passed): what is queued is taken
// at the cost of one call, and a large rest in one more. kProgress when any
// bytes came; kWouldBlock when none did.
IoStep RecvSomeThenWait(int fd, IovCursor& cursor, Deadline deadline);
constexpr uint64_t kWaitingReceiveMinBytes = 64 << 10;

// Blocking (deadline-bounded) whole-buffer I/O; RecvAll receives with
// RecvSomeThenWait.
Result SendAll(int fd, IovCursor& cursor, Deadline deadline);
Result RecvAll(int fd, IovCursor& cursor, Deadline deadline);
Result SendAll(int fd, const void* data, size_t len, Deadline deadline);
Result RecvAll(int fd, void* data, size_t len, Deadline deadline);
// Waits for fd readable (or closed); false on timeout.
bool WaitReadable(int fd, Deadline deadline);
// Waits for poll() `events` on fd; false on timeout (true on error, so that
// the following I/O call reports it).
bool WaitForEvents(int fd, short events, Deadline deadline);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_NET_SOCKET_H_
