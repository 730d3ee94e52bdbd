#include "bench/socket_baseline.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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
constexpr unsigned kMaxConnections = 256;

struct Header {
  uint32_t magic;
  uint32_t op;
  uint64_t bytes;
  uint64_t offset;  // where in the server's buffer the bytes lie
};

}  // namespace

SocketBaselineServer::~SocketBaselineServer() {
  stopping_ = true;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : conn_threads_) t.join();
  for (int fd : conn_fds_) ::close(fd);
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
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || conn_fds_.size() >= kMaxConnections) {
      ::close(fd);
      continue;
    }
    lldd_tools::SetNoDelay(fd);
    conn_fds_.push_back(fd);
    conn_threads_.emplace_back([fd] { ServeConnection(fd); });
  }
}

// Until the client goes away; the descriptor is closed by the destructor.
void SocketBaselineServer::ServeConnection(int fd) {
  std::vector<uint8_t> buffer;
  for (;;) {
    Header h;
    if (!RecvAll(fd, &h, sizeof(h)) || h.magic != kMagic || h.bytes > kMaxBytes ||
        h.offset > kMaxBytes - h.bytes)
      break;
    if (buffer.size() < h.offset + h.bytes) buffer.resize(h.offset + h.bytes, 0x5A);
    uint8_t* at = buffer.data() + h.offset;
    if (h.op == kOpSend) {
      if (!SendAll(fd, at, h.bytes)) break;
    } else if (h.op == kOpReceive) {
      uint64_t ack = h.bytes;
      if (!RecvAll(fd, at, h.bytes) || !SendAll(fd, &ack, sizeof(ack))) break;
    } else {
      break;
    }
  }
  ::shutdown(fd, SHUT_RDWR);
}

SocketBaselineClient::~SocketBaselineClient() {
  for (auto& c : conns_) ::close(c->fd);
}

bool SocketBaselineClient::Connect(const std::string& host, uint16_t port, std::string* error) {
  host_ = host;
  port_ = port;
  auto c = std::make_unique<Conn>();
  c->fd = lldd_tools::TcpConnect(host, port, 10000, error);
  if (c->fd < 0) return false;
  lldd_tools::SetNoDelay(c->fd);
  conns_.push_back(std::move(c));
  return true;
}

bool SocketBaselineClient::Call(Conn& c, bool push, uint64_t bytes, uint64_t offset) {
  Header h{kMagic, push ? kOpReceive : kOpSend, bytes, offset};
  if (!SendAll(c.fd, &h, sizeof(h))) return false;
  uint8_t* at = c.buffer.data() + offset;
  if (push) {
    uint64_t ack = 0;
    return SendAll(c.fd, at, bytes) && RecvAll(c.fd, &ack, sizeof(ack)) && ack == bytes;
  }
  return RecvAll(c.fd, at, bytes);
}

bool SocketBaselineClient::Measure(bool push, uint64_t bytes, unsigned connections, const LoopLimits& limits,
                                   BaselineResult* out, std::string* error, uint64_t copies) {
  if (conns_.empty()) {
    *error = "not connected";
    return false;
  }
  copies = std::max<uint64_t>(1, copies);
  if (bytes > kMaxBytes || copies * bytes > kMaxBytes) {
    *error = "socket baseline is limited to " + lldd_tools::FormatBytes(kMaxBytes) + " per call";
    return false;
  }
  connections = std::clamp(connections, 1U, kMaxConnections);
  while (conns_.size() < connections) {
    auto c = std::make_unique<Conn>();
    c->fd = lldd_tools::TcpConnect(host_, port_, 10000, error);
    if (c->fd < 0) return false;
    lldd_tools::SetNoDelay(c->fd);
    conns_.push_back(std::move(c));
  }
  // Stripes as the library cuts them: equal shares, the last one shorter.
  const uint64_t stripe = (bytes + connections - 1) / connections;
  std::vector<uint64_t> share(connections, 0);
  for (unsigned i = 0; i < connections; ++i) share[i] = std::min(stripe, bytes - std::min(bytes, i * stripe));
  for (unsigned i = 0; i < connections; ++i) {
    Conn& c = *conns_[i];
    if (c.buffer.size() < copies * share[i]) c.buffer.resize(copies * share[i], 0xA5);
  }
  // Every connection runs the timed pattern twice: first untimed, for a
  // third of the budget and at least once over every copy, so the server
  // sizes its buffer, every copy has been through the socket, and the
  // kernel has grown the connection's buffers as it does for a long-lived
  // one (a fresh loopback connection's receive buffer measured 3-4 MiB
  // after one call and 15-32 MiB after a 0.3 s row; the library's
  // connections, long used by then, are the limit's to compare with).
  LoopLimits warm = limits;
  warm.min_seconds = limits.min_seconds / 3;
  warm.min_calls = std::max<uint64_t>(limits.min_calls, copies);
  std::vector<LoopResult> results(connections);
  Clock::time_point start;
  const LoopLimits* runs[] = {&warm, &limits};
  for (const LoopLimits* run : runs) {
    start = Clock::now();
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < connections; ++i)
      threads.emplace_back([&, i] {
        if (share[i] == 0) {
          results[i] = LoopResult{};
          results[i].start = results[i].end = start;
          return;
        }
        uint64_t call = 0;
        results[i] = RunTimed(*run, start, [&] { return Call(*conns_[i], push, share[i], (call++ % copies) * share[i]); });
      });
    for (auto& t : threads) t.join();
    for (const LoopResult& r : results) {
      if (!r.ok) {
        *error = "socket baseline connection failed";
        return false;
      }
    }
  }
  lldd_tools::LatencyStats latency;
  uint64_t moved = 0;
  Clock::time_point end = start;
  for (unsigned i = 0; i < connections; ++i) {
    latency.Merge(results[i].latency_us);
    moved += share[i] * results[i].calls;
    end = std::max(end, results[i].end);
  }
  out->gbps = lldd_tools::GigabytesPerSecond(static_cast<double>(moved), Seconds(start, end));
  out->p50_us = latency.Percentile(50);
  out->p99_us = latency.Percentile(99);
  out->ways = connections;
  return true;
}

}  // namespace lldd_bench
