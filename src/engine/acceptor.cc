#include "engine/acceptor.h"

#include <algorithm>

#include "common/logging.h"
#include "control/frame_io.h"
#include "engine/handshake.h"

namespace lldd {

Result Acceptor::Start(const std::string& host, uint16_t port, ThreadGroup& threads, OnHello on_hello) {
  Socket s;
  uint16_t bound = 0;
  Result r = Listen(host, port, &s, &bound);
  if (!r.ok()) return Result::Failed(r.message());
  threads_ = &threads;
  on_hello_ = std::move(on_hello);
  stopping_ = false;
  listener_ = std::make_shared<Socket>(std::move(s));
  port_ = bound;
  auto listener = listener_;
  threads.Spawn([this, listener] { AcceptLoop(listener); });
  return Result::Ok();
}

void Acceptor::Stop() {
  stopping_ = true;
  if (listener_) listener_->Shutdown();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& w : handshaking_)
    if (auto s = w.lock()) s->Shutdown();
  handshaking_.clear();
  port_ = 0;
}

void Acceptor::AcceptLoop(std::shared_ptr<Socket> listener) {
  for (;;) {
    Socket s;
    std::string peer;
    Result r = Accept(*listener, &s, &peer);
    if (!r.ok()) {
      LDD_LOG(Error) << "listener stopped: " << r.message();
      return;
    }
    if (!s.valid() || stopping_) return;
    if (pending_.load() >= kMaxPendingHandshakes) {
      LDD_LOG(Warn) << "dropping connection from " << peer << ": " << kMaxPendingHandshakes
                    << " handshakes are already pending";
      continue;
    }
    TuneForTransfer(s.fd());
    ++pending_;
    auto socket = std::make_shared<Socket>(std::move(s));
    {
      std::lock_guard<std::mutex> lock(mu_);
      handshaking_.erase(std::remove_if(handshaking_.begin(), handshaking_.end(), [](auto& w) { return w.expired(); }),
                         handshaking_.end());
      handshaking_.push_back(socket);
    }
    threads_->Spawn([this, socket, peer] { Handle(socket, peer); });
  }
}

void Acceptor::Handle(std::shared_ptr<Socket> socket, std::string peer) {
  FrameHeader h;
  std::vector<uint8_t> meta;
  Hello hello;
  Result r = RecvFrame(socket->fd(), &h, &meta, Deadline::AfterMillis(kHandshakeTimeoutMs), kHelloMetaLimit);
  --pending_;
  if (r.ok() && h.type != MsgType::kHello) r = Result::Failed("first frame is not HELLO");
  if (r.ok()) r = DecodeHello(meta, &hello);
  if (!r.ok()) {
    LDD_LOG(Warn) << "dropping connection from " << peer << ": " << r.message();
    return;
  }
  on_hello_(socket, peer, h.request_id, hello);
}

}  // namespace lldd
