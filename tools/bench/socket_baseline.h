// The raw-socket yardstick: what one plain TCP connection between the same
// two processes (or machines) moves, measured in the same run as the
// library, with the same bytes per call.
//
// A call is a request/response round trip: for a pull the client asks and
// the server answers with the bytes; for a push the client sends the bytes
// and the server acknowledges. No library code is involved on either side.
#ifndef LLM_DATADIST_TOOLS_BENCH_SOCKET_BASELINE_H_
#define LLM_DATADIST_TOOLS_BENCH_SOCKET_BASELINE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bench/timed_loop.h"

namespace lldd_bench {

struct BaselineResult {
  double gbps = 0;
  double p50_us = 0;
  double p99_us = 0;
};

// Serves one connection at a time on its own thread until destroyed.
class SocketBaselineServer {
 public:
  ~SocketBaselineServer();
  bool Start(const std::string& host, uint16_t port, std::string* error);
  uint16_t port() const { return port_; }

 private:
  void Serve();
  void ServeConnection(int fd);
  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  std::atomic<bool> stopping_{false};
  uint16_t port_ = 0;
  std::vector<uint8_t> buffer_;
  std::thread thread_;
};

class SocketBaselineClient {
 public:
  ~SocketBaselineClient();
  bool Connect(const std::string& host, uint16_t port, std::string* error);
  // push: the client sends `bytes`; else the server does.
  bool Measure(bool push, uint64_t bytes, const LoopLimits& limits, BaselineResult* out, std::string* error);

 private:
  bool Call(bool push, uint64_t bytes);
  int fd_ = -1;
  std::vector<uint8_t> buffer_;
};

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_SOCKET_BASELINE_H_
