#include "transport/shm/shm_transport.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>

#include "common/logging.h"
#include "common/thread_group.h"
#include "common/wire.h"
#include "net/unix_channel.h"
#include "transport/shm/shm_endpoint.h"
#include "transport/shm/shm_messages.h"

namespace lldd {
namespace {

constexpr int kHandshakeTimeoutMs = 5000;
// Channel handshakes in progress; more are dropped at once.
constexpr int kMaxPendingHandshakes = 256;

struct ShmInfo {
  std::string host_identity;
  std::string socket_name;  // empty: this side does not listen
};

std::vector<uint8_t> EncodeInfo(const ShmInfo& info) {
  WireWriter w;
  w.Str(info.host_identity);
  w.Str(info.socket_name);
  return std::move(w.buffer());
}

Result DecodeInfo(const std::vector<uint8_t>& bytes, ShmInfo* info) {
  WireReader r(bytes);
  info->host_identity = r.Str(256);
  info->socket_name = r.Str(108);
  return r.done() ? Result::Ok() : Result::LinkFailed("malformed shm connection info");
}

class ShmTransport : public Transport {
 public:
  ~ShmTransport() override { Stop(); }
  const char* name() const override { return "shm"; }
  TransportCaps caps() const override {
    TransportCaps c;
    c.any_host = false;
    c.needs_peer_thread = false;
    return c;
  }

  Result Start(const TransportConfig& config, RegionTable& regions, size_t slot) override;
  void Stop() override;
  // The peer maps library memory (its mapping keeps the pages), but writes
  // user memory with process_vm_writev: only it can stop doing so.
  bool RevokeNeedsPeer(uint32_t kind, bool allocated) const override {
    return !allocated && kind != kDeviceMemory;
  }
  Result LocalInfo(std::vector<uint8_t>* info) const override {
    *info = EncodeInfo({host_identity_, socket_name_});
    return Result::Ok();
  }
  Result CanReach(const std::vector<uint8_t>& peer_info) const override;
  Result Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                 std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) override;

 private:
  struct Waiting {
    std::weak_ptr<LinkHandle> link;
    std::weak_ptr<ShmEndpoint> endpoint;
  };
  void AcceptLoop(std::shared_ptr<Socket> listener);
  void HandleIncoming(std::shared_ptr<Socket> socket);
  static Result Join(const std::shared_ptr<LinkHandle>& link, ShmEndpoint& endpoint, const std::string& socket_name,
                     Deadline deadline);

  RegionTable* regions_ = nullptr;
  uint32_t copy_threads_ = 0;
  std::string host_identity_;
  std::string socket_name_;
  std::shared_ptr<Socket> listener_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> pending_{0};
  ThreadGroup threads_;
  std::mutex mu_;
  std::map<std::pair<uint64_t, uint64_t>, Waiting> waiting_;  // by (link id, secret)
  std::vector<std::weak_ptr<Socket>> handshaking_;  // shut down by Stop()
};

Result ShmTransport::Start(const TransportConfig& config, RegionTable& regions, size_t slot) {
  (void)slot;
  regions_ = &regions;
  copy_threads_ = config.copy_threads;
  stopping_ = false;
  if (host_identity_.empty()) host_identity_ = HostIdentity();
  socket_name_.clear();
  // Every instance listens (a client may become a server by SetRole, and
  // the socket costs nothing). Without a Unix socket (unusual sandboxes) links simply use another path.
  Socket s;
  std::string name = MakeAbstractName();
  Result r = UnixListen(name, &s);
  if (!r.ok()) {
    LDD_LOG(Warn) << "no shared-memory socket (" << r.message() << "): links from this host will use TCP";
    return Result::Ok();
  }
  listener_ = std::make_shared<Socket>(std::move(s));
  socket_name_ = name;
  auto listener = listener_;
  threads_.Spawn([this, listener] { AcceptLoop(listener); });
  return Result::Ok();
}

void ShmTransport::Stop() {
  stopping_ = true;
  if (listener_) listener_->Shutdown();
  listener_.reset();
  socket_name_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& w : handshaking_)
      if (auto s = w.lock()) s->Shutdown();
  }
  threads_.JoinAll();
  std::lock_guard<std::mutex> lock(mu_);
  waiting_.clear();
  handshaking_.clear();
}

Result ShmTransport::CanReach(const std::vector<uint8_t>& peer_info) const {
  ShmInfo peer;
  LDD_RETURN_IF_ERROR(DecodeInfo(peer_info, &peer));
  if (peer.host_identity != host_identity_)
    return Result::LinkFailed("the peer is on another host, or in another network or pid namespace");
  if (socket_name_.empty() && peer.socket_name.empty())
    return Result::LinkFailed("this instance has no shared-memory socket");
  return Result::Ok();
}

Result ShmTransport::Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                             std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) {
  ShmInfo peer;
  LDD_RETURN_IF_ERROR(DecodeInfo(peer_info, &peer));
  auto endpoint = std::make_shared<ShmEndpoint>(*regions_, std::move(fallback), link->remote_cluster_id(), copy_threads_);
  if (link->initiator()) {
    LDD_RETURN_IF_ERROR(Join(link, *endpoint, peer.socket_name, deadline));
    link->Spawn([endpoint] { endpoint->Run(); });
  } else {
    // The peer opens the channel once it has our answer.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();)
      it = it->second.endpoint.expired() ? waiting_.erase(it) : ++it;
    waiting_[{link->link_id(), link->link_secret()}] = {link, endpoint};
  }
  *out = endpoint;
  return Result::Ok();
}

Result ShmTransport::Join(const std::shared_ptr<LinkHandle>& link, ShmEndpoint& endpoint,
                          const std::string& socket_name, Deadline deadline) {
  if (socket_name.empty()) return Result::LinkFailed("'shm' data path impossible: the peer has no shared-memory socket");
  Socket s;
  Result r = UnixConnect(socket_name, deadline, &s);
  if (!r.ok()) return Result::LinkFailed(Msg("'shm' data path impossible: ", r.message()));
  ShmHello hello{link->link_id(), link->link_secret()};
  LDD_RETURN_IF_ERROR(UnixSend(s.fd(), EncodeShmMessage(ShmMsg::kHello, 1, 0, EncodeShmHello(hello)), {}, deadline));
  std::vector<uint8_t> message;
  std::vector<int> fds;
  r = UnixRecv(s.fd(), &message, &fds, deadline);
  for (int fd : fds) ::close(fd);
  ShmHeader h;
  std::vector<uint8_t> meta;
  if (r.ok()) r = DecodeShmMessage(message, &h, &meta);
  if (r.ok() && (h.type != ShmMsg::kHelloAck || h.status != llm_datadist::LLM_SUCCESS))
    r = Result::LinkFailed("the peer refused the shared-memory channel");
  if (!r.ok()) return Result::LinkFailed(r.message());
  auto socket = std::make_shared<Socket>(std::move(s));
  link->TrackSocket(socket);
  endpoint.AttachChannel(socket);
  return Result::Ok();
}

void ShmTransport::AcceptLoop(std::shared_ptr<Socket> listener) {
  for (;;) {
    if (listener->shut_down() || stopping_) return;
    if (!WaitReadable(listener->fd(), Deadline::AfterMillis(100))) continue;
    int fd = ::accept4(listener->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) ::usleep(10000);
      if (errno == EINVAL) return;  // shut down
      continue;
    }
    auto socket = std::make_shared<Socket>(fd);
    if (pending_.load() >= kMaxPendingHandshakes) {
      LDD_LOG(Warn) << "dropping a shared-memory connection: " << kMaxPendingHandshakes
                    << " handshakes are already pending";
      continue;
    }
    ++pending_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      handshaking_.erase(std::remove_if(handshaking_.begin(), handshaking_.end(), [](auto& w) { return w.expired(); }),
                         handshaking_.end());
      handshaking_.push_back(socket);
    }
    threads_.Spawn([this, socket] { HandleIncoming(socket); });
  }
}

void ShmTransport::HandleIncoming(std::shared_ptr<Socket> socket) {
  std::vector<uint8_t> message;
  std::vector<int> fds;
  ShmHeader h;
  std::vector<uint8_t> meta;
  ShmHello hello;
  Result r = UnixRecv(socket->fd(), &message, &fds, Deadline::AfterMillis(kHandshakeTimeoutMs));
  --pending_;
  for (int fd : fds) ::close(fd);
  if (r.ok()) r = DecodeShmMessage(message, &h, &meta);
  if (r.ok() && h.type != ShmMsg::kHello) r = Result::Failed("first message is not SHM_HELLO");
  if (r.ok()) r = DecodeShmHello(meta, &hello);
  if (!r.ok()) {
    LDD_LOG(Warn) << "dropping shared-memory connection: " << r.message();
    return;
  }
  std::shared_ptr<LinkHandle> link;
  std::shared_ptr<ShmEndpoint> endpoint;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiting_.find({hello.link_id, hello.link_secret});
    if (it != waiting_.end()) {
      link = it->second.link.lock();
      endpoint = it->second.endpoint.lock();
      waiting_.erase(it);  // one channel per link
    }
  }
  if (link && link->closed()) link.reset();
  const Status status = link && endpoint ? llm_datadist::LLM_SUCCESS : llm_datadist::LLM_NOT_YET_LINK;
  r = UnixSend(socket->fd(), EncodeShmMessage(ShmMsg::kHelloAck, h.request_id, status, {}), {},
               Deadline::AfterMillis(kHandshakeTimeoutMs));
  if (status != llm_datadist::LLM_SUCCESS || !r.ok()) return;
  link->TrackSocket(socket);
  endpoint->AttachChannel(socket);
  std::string why = endpoint->Run();
  LDD_LOG(Debug) << "shared-memory channel of cluster " << link->remote_cluster_id() << " ended: " << why;
}

}  // namespace

std::unique_ptr<Transport> MakeShmTransport() { return std::make_unique<ShmTransport>(); }

}  // namespace lldd
