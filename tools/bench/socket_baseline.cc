#include "bench/socket_baseline.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "common/tcp.h"
#include "common/units.h"

namespace lldd_bench {
namespace {

using lldd_tools::RecvAll;
using lldd_tools::SendAll;

constexpr uint32_t kMagic = 0x534F434BU;  // "SOCK"
constexpr uint32_t kOpSend = 1;           // server sends the bytes (pull)
constexpr uint32_t kOpReceive = 2;        // server receives them (push)
constexpr uint64_t kMaxBytes = 4ULL << 30;

struct Header {
  uint32_t magic;
  uint32_t op;
  uint64_t bytes;
};

}  // namespace

SocketBaselineServer::~SocketBaselineServer() {
  stopping_ = true;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  int c = conn_fd_.load();
  if (c >= 0) ::shutdown(c, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

bool SocketBaselineServer::Start(const std::string& host, uint16_t port, std::string* error) {
  listen_fd_ = lldd_tools::TcpListen(host, port, error);
  if (listen_fd_ < 0) return false;
  port_ = lldd_tools::LocalPort(listen_fd_);
  thread_ = std::thread([this] { Serve(); });
  return true;
}

void SocketBaselineServer::Serve() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    lldd_tools::SetNoDelay(fd);
    conn_fd_ = fd;
    if (!stopping_) ServeConnection(fd);
    conn_fd_ = -1;
    ::close(fd);
  }
}

void SocketBaselineServer::ServeConnection(int fd) {
  for (;;) {
    Header h;
    if (!RecvAll(fd, &h, sizeof(h)) || h.magic != kMagic || h.bytes > kMaxBytes) return;
    if (buffer_.size() < h.bytes) buffer_.resize(h.bytes, 0x5A);
    if (h.op == kOpSend) {
      if (!SendAll(fd, buffer_.data(), h.bytes)) return;
    } else if (h.op == kOpReceive) {
      uint64_t ack = h.bytes;
      if (!RecvAll(fd, buffer_.data(), h.bytes) || !SendAll(fd, &ack, sizeof(ack))) return;
    } else {
      return;
    }
  }
}

SocketBaselineClient::~SocketBaselineClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool SocketBaselineClient::Connect(const std::string& host, uint16_t port, std::string* error) {
  fd_ = lldd_tools::TcpConnect(host, port, 10000, error);
  if (fd_ >= 0) lldd_tools::SetNoDelay(fd_);
  return fd_ >= 0;
}

bool SocketBaselineClient::Call(bool push, uint64_t bytes) {
  Header h{kMagic, push ? kOpReceive : kOpSend, bytes};
  if (!SendAll(fd_, &h, sizeof(h))) return false;
  if (push) {
    uint64_t ack = 0;
    return SendAll(fd_, buffer_.data(), bytes) && RecvAll(fd_, &ack, sizeof(ack)) && ack == bytes;
  }
  return RecvAll(fd_, buffer_.data(), bytes);
}

bool SocketBaselineClient::Measure(bool push, uint64_t bytes, const LoopLimits& limits, BaselineResult* out,
                                   std::string* error) {
  if (fd_ < 0) {
    *error = "not connected";
    return false;
  }
  if (bytes > kMaxBytes) {
    *error = "socket baseline is limited to " + lldd_tools::FormatBytes(kMaxBytes) + " per call";
    return false;
  }
  if (buffer_.size() < bytes) buffer_.resize(bytes, 0xA5);
  // One untimed call: the server sizes its buffer and the window opens.
  if (!Call(push, bytes)) {
    *error = "socket baseline connection failed";
    return false;
  }
  LoopResult r = RunTimed(limits, Clock::now(), [&] { return Call(push, bytes); });
  if (!r.ok) {
    *error = "socket baseline connection failed";
    return false;
  }
  out->gbps = lldd_tools::GigabytesPerSecond(static_cast<double>(bytes) * static_cast<double>(r.calls),
                                             Seconds(r.start, r.end));
  out->p50_us = r.latency_us.Percentile(50);
  out->p99_us = r.latency_us.Percentile(99);
  return true;
}

}  // namespace lldd_bench
