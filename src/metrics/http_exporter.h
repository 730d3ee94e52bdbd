// A minimal HTTP/1.x server for one thing: GET /metrics, answered with
// what `render` returns, as Prometheus text. One thread and poll(); each
// connection gets one request and a deadline for it, so oversized,
// malformed or slow (slowloris) requests are answered with an error or
// dropped without holding anything else up, and a flood of them evicts
// the oldest. It never touches the data path.
#ifndef LLM_DATADIST_SRC_METRICS_HTTP_EXPORTER_H_
#define LLM_DATADIST_SRC_METRICS_HTTP_EXPORTER_H_

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "common/result.h"
#include "net/socket.h"

namespace lldd::metrics {

class HttpExporter {
 public:
  static constexpr size_t kMaxRequestBytes = 8192;
  static constexpr int kRequestTimeoutMs = 2000;
  static constexpr size_t kMaxConnections = 64;

  ~HttpExporter() { Stop(); }
  Result Start(const std::string& host, uint16_t port, std::function<std::string()> render);
  void Stop();
  uint16_t port() const { return port_; }

 private:
  void Run();

  Socket listener_;
  Socket wake_;
  std::function<std::string()> render_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  uint16_t port_ = 0;
};

// The response to one complete request head (exposed for tests): 200 with
// the body for GET /metrics, else 400/404/405/431 with a short text.
std::string HttpResponse(const std::string& request_head, const std::function<std::string()>& render);

}  // namespace lldd::metrics

#endif  // LLM_DATADIST_SRC_METRICS_HTTP_EXPORTER_H_
