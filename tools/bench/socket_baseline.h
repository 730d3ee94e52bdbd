// The raw-socket yardstick: what plain TCP connections between the same
// two processes (or machines) move, measured in the same run as the
// library, with the same bytes per call.
//
// A call is a request/response round trip: for a pull the client asks and
// the server answers with the bytes; for a push the client sends the bytes
// and the server acknowledges. With N connections a call's bytes are split
// in N equal stripes, one per connection, and each connection (with its own
// thread on both sides) repeats its stripe (or cycles through copies of
// it) for the time budget without waiting for the others, after an untimed
// third of it that warms the connections: the figure is what N warm
// connections can carry, an
// upper bound for a library striping one call over N connections. No
// library code is involved on either side.
#ifndef LLM_DATADIST_TOOLS_BENCH_SOCKET_BASELINE_H_
#define LLM_DATADIST_TOOLS_BENCH_SOCKET_BASELINE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/timed_loop.h"

namespace lldd_bench {

struct BaselineResult {
  double gbps = 0;
  double p50_us = 0;  // per call (with N connections: per stripe)
  double p99_us = 0;
  unsigned ways = 0;  // threads or connections; 0: not measured
};

// Serves any number of connections, each on its own thread, until destroyed.
class SocketBaselineServer {
 public:
  ~SocketBaselineServer();
  bool Start(const std::string& host, uint16_t port, std::string* error);
  uint16_t port() const { return port_; }

 private:
  void Serve();
  static void ServeConnection(int fd);
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  uint16_t port_ = 0;
  std::mutex mu_;
  std::vector<int> conn_fds_;  // guarded by mu_
  std::vector<std::thread> conn_threads_;
  std::thread thread_;
};

class SocketBaselineClient {
 public:
  ~SocketBaselineClient();
  bool Connect(const std::string& host, uint16_t port, std::string* error);
  // push: the client sends `bytes` per call; else the server does. The
  // call is striped over `connections` connections (opened on first use
  // and kept). Call n moves copy n % `copies` of its stripe: each side's
  // buffers hold `copies` x `bytes`, as a row whose requests in flight
  // each move their own bytes.
  bool Measure(bool push, uint64_t bytes, unsigned connections, const LoopLimits& limits, BaselineResult* out,
               std::string* error, uint64_t copies = 1);

 private:
  struct Conn {
    int fd = -1;
    std::vector<uint8_t> buffer;
  };
  static bool Call(Conn& c, bool push, uint64_t bytes, uint64_t offset);
  std::string host_;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_SOCKET_BASELINE_H_
