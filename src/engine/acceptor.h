// The instance's TCP listener: accepts connections, reads each one's HELLO
// within the handshake timeout on a thread of its own, and hands it on.
// Admission is bounded: beyond kMaxPendingHandshakes connections that have
// not said HELLO yet, new ones are dropped at once, so a flood of idle
// connections cannot pile up threads. Stop() wakes the pending ones.
#ifndef LLM_DATADIST_SRC_ENGINE_ACCEPTOR_H_
#define LLM_DATADIST_SRC_ENGINE_ACCEPTOR_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/thread_group.h"
#include "control/protocol.h"
#include "net/socket.h"

namespace lldd {

class Acceptor {
 public:
  static constexpr int kMaxPendingHandshakes = 256;
  // Runs on the connection's thread, which it may keep (a control
  // connection is served there for the link's life).
  using OnHello = std::function<void(std::shared_ptr<Socket> socket, const std::string& peer, uint64_t request_id,
                                     const Hello& hello)>;

  // Listens on host:port (port 0: any free one). Threads come from
  // `threads`, which the owner joins after Stop().
  Result Start(const std::string& host, uint16_t port, ThreadGroup& threads, OnHello on_hello);
  void Stop();
  uint16_t port() const { return port_.load(); }

 private:
  void AcceptLoop(std::shared_ptr<Socket> listener);
  void Handle(std::shared_ptr<Socket> socket, std::string peer);

  ThreadGroup* threads_ = nullptr;
  OnHello on_hello_;
  std::shared_ptr<Socket> listener_;
  std::atomic<uint16_t> port_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int> pending_{0};
  std::mutex mu_;
  std::vector<std::weak_ptr<Socket>> handshaking_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_ACCEPTOR_H_
