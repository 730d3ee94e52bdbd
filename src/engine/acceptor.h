// The instance's TCP listener and admission of new connections.
//
// One event-loop thread (epoll) accepts connections and reads each one's
// first frame without blocking, so thousands of connections that send
// nothing, or drip their HELLO a byte at a time, cost a table entry and a
// descriptor each, not a thread. A HELLO is handed on the moment its last
// byte arrives, whatever else is pending. The pending table evicts the
// oldest (slowest) entry when full and caps entries per source address
// (engine/admission.h); each entry has a short deadline for its whole
// first frame. Only a connection that has sent a complete HELLO gets a
// thread: the handler runs the token challenge and HELLO_ACK there, and a
// control connection keeps it for the link's life.
#ifndef LLM_DATADIST_SRC_ENGINE_ACCEPTOR_H_
#define LLM_DATADIST_SRC_ENGINE_ACCEPTOR_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/thread_group.h"
#include "control/protocol.h"
#include "engine/admission.h"
#include "metrics/metrics.h"
#include "net/socket.h"

namespace lldd {

class Acceptor {
 public:
  // Runs on a thread of its own, which it may keep (a control connection
  // is served there for the link's life).
  using OnHello = std::function<void(std::shared_ptr<Socket> socket, const std::string& peer, uint64_t request_id,
                                     const Hello& hello)>;

  ~Acceptor() { Stop(); }

  // Listens on host:port (port 0: any free one). Threads come from
  // `threads`, which the owner joins after Stop(). Counts go to `metrics`
  // (may be null).
  Result Start(const std::string& host, uint16_t port, ThreadGroup& threads, OnHello on_hello,
               metrics::Registry* metrics = nullptr, AdmissionLimits limits = {});
  // Stops the loop (it closes every pending connection on its way out).
  void Stop();
  uint16_t port() const { return port_.load(); }

 private:
  struct Loop;
  std::mutex mu_;  // Finalize may stop it while SetRole does
  std::shared_ptr<Loop> loop_;
  std::atomic<uint16_t> port_{0};
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_ACCEPTOR_H_
