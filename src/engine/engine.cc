#include "engine/engine.h"

#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <future>

#include "common/logging.h"
#include "control/frame_io.h"
#include "control/link_auth.h"
#include "transport/shm/shm_endpoint.h"
#include "transport/shm/unix_channel.h"
#include "transport/tcp/data_server.h"
#include "transport/tcp/tcp_endpoint.h"

namespace lldd {
namespace {

using llm_datadist::ClusterInfo;
using llm_datadist::LLM_SUCCESS;

constexpr int kHandshakeTimeoutMs = 5000;
// Connections that have not finished their handshake yet; more are dropped
// at once, so a flood of idle connections cannot pile up threads.
constexpr int kMaxPendingHandshakes = 256;
constexpr uint32_t kHelloMetaLimit = 4096;
// A peer that vanishes without closing (power loss, cut cable) is noticed
// within about 10 s by keepalive on the control connection.
constexpr int kKeepAliveIdleS = 5;
constexpr int kKeepAliveIntervalS = 1;
constexpr int kKeepAliveCount = 5;

uint64_t RandomU64() {
  uint64_t v = 0;
  while (getrandom(&v, sizeof(v), 0) != sizeof(v)) {
  }
  return v;
}

Result SendHelloAck(int fd, uint64_t request_id, Status status, const HelloAck& ack) {
  FrameHeader h;
  h.type = MsgType::kHelloAck;
  h.request_id = request_id;
  h.status = status;
  return SendFrame(fd, h, EncodeHelloAck(ack), Deadline::AfterMillis(kHandshakeTimeoutMs));
}

// Sends HELLO, answers a token challenge if one comes, waits for HELLO_ACK.
Result Handshake(int fd, const Hello& hello, const std::string& token, Deadline deadline, HelloAck* ack) {
  FrameHeader h;
  h.type = MsgType::kHello;
  h.request_id = 1;
  LDD_RETURN_IF_ERROR(SendFrame(fd, h, EncodeHello(hello), deadline));
  std::vector<uint8_t> meta;
  FrameHeader rh;
  Result r = RecvFrame(fd, &rh, &meta, deadline, 64 << 10);
  bool challenged = false;
  if (r.ok() && rh.type == MsgType::kAuthChallenge) {
    if (token.empty())
      return Result::LinkFailed(Msg("the peer requires a link token (option ", kOptionLinkToken, "); none is set here"));
    AuthChallenge challenge;
    if (!DecodeAuthChallenge(meta, &challenge).ok()) return Result::LinkFailed("handshake failed: malformed challenge");
    if (!AuthProofMatches(AuthProof(token, "server", hello.auth_nonce, challenge.nonce), challenge.proof))
      return Result::LinkFailed("the peer does not know our link token: the tokens differ");
    FrameHeader proof;
    proof.type = MsgType::kAuthProof;
    proof.request_id = rh.request_id;
    LDD_RETURN_IF_ERROR(SendFrame(fd, proof, AuthProof(token, "client", challenge.nonce, hello.auth_nonce), deadline));
    challenged = true;
    r = RecvFrame(fd, &rh, &meta, deadline, 64 << 10);
  }
  if (r.code() == llm_datadist::LLM_TIMEOUT) return Result::Timeout("the peer did not answer the handshake in time");
  if (!r.ok()) return Result::LinkFailed(Msg("handshake failed: ", r.message()));
  if (rh.type != MsgType::kHelloAck) return Result::LinkFailed("handshake failed: unexpected answer");
  if (!DecodeHelloAck(meta, ack).ok()) return Result::LinkFailed("handshake failed: malformed answer");
  if (rh.status != LLM_SUCCESS) return Result(rh.status, Msg("the peer refused the link: ", ack->error));
  if (!token.empty() && !challenged && hello.kind == ConnKind::kControl)
    return Result::LinkFailed(Msg("the peer does not use a link token, but ", kOptionLinkToken, " is set here"));
  return Result::Ok();
}

}  // namespace

Engine::Engine(uint64_t cluster_id, llm_datadist::LlmRole role)
    : cluster_id_(cluster_id), instance_id_(RandomU64()), role_(role) {}

Engine::~Engine() { Finalize(); }

Result Engine::CheckInitialized() const {
  if (!initialized_ || stopping_) return Result::Failed("LlmDataDist is not initialized (call Initialize first)");
  return Result::Ok();
}

Result Engine::Initialize(const OptionMap& options) {
  std::unique_lock<std::shared_mutex> lock(lifecycle_mu_);
  if (initialized_) return Result::Failed("already initialized; call Finalize before initializing again");
  EngineOptions parsed;
  LDD_RETURN_IF_ERROR(ParseOptions(options, &parsed));
  options_ = parsed;
  stopping_ = false;
  if (host_identity_.empty()) host_identity_ = HostIdentity();
  if (options_.listen) LDD_RETURN_IF_ERROR(StartListening());
  initialized_ = true;
  LDD_LOG(Info) << "cluster " << cluster_id_ << " initialized as "
                << (options_.listen ? Msg("server on port ", listen_port_.load()) : std::string("client"))
                << ", backend " << options_.backend << ", wait time " << options_.sync_wait_ms << " ms";
  return Result::Ok();
}

void Engine::Finalize() {
  stopping_ = true;
  StopListening();
  auto close_everything = [this] {
    std::vector<LinkPtr> links;
    {
      std::lock_guard<std::mutex> lock(links_mu_);
      for (auto& [id, link] : links_) links.push_back(link);
      for (auto& w : handshaking_)
        if (auto s = w.lock()) s->Shutdown();
    }
    for (auto& link : links) link->Close("finalized");
  };
  close_everything();
  std::unique_lock<std::shared_mutex> lock(lifecycle_mu_);
  close_everything();  // links made by calls that were in flight
  threads_.JoinAll();
  {
    std::lock_guard<std::mutex> links_lock(links_mu_);
    links_.clear();
    handshaking_.clear();
  }
  caches_.Clear();
  listener_.reset();
  shm_listener_.reset();
  listen_port_ = 0;
  initialized_ = false;
}

Result Engine::SetRole(llm_datadist::LlmRole role, const OptionMap& options) {
  std::unique_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  // The original's C++ SetRole never checks llm.EnableSwitchRole (its own
  // role-switch samples never set it), so neither do we.
  if (role != llm_datadist::LlmRole::kPrompt && role != llm_datadist::LlmRole::kDecoder &&
      role != llm_datadist::LlmRole::kMix)
    return Result::ParamInvalid(Msg("role ", static_cast<int>(role), " is not a valid LlmRole"));
  {
    std::lock_guard<std::mutex> links_lock(links_mu_);
    for (auto& [id, link] : links_)
      if (!link->closed())
        return Result(llm_datadist::LLM_EXIST_LINK, Msg("cluster ", id, " is still linked; unlink it first"));
  }
  EngineOptions next = options_;
  LDD_RETURN_IF_ERROR(ParseListenOption(options, &next));
  StopListening();
  threads_.JoinAll();
  {
    std::lock_guard<std::mutex> links_lock(links_mu_);
    links_.clear();
  }
  listener_.reset();
  shm_listener_.reset();
  listen_port_ = 0;
  options_.listen = next.listen;
  options_.listen_host = next.listen_host;
  options_.listen_port = next.listen_port;
  if (options_.listen) LDD_RETURN_IF_ERROR(StartListening());
  role_ = role;
  return Result::Ok();
}

Result Engine::StartListening() {
  Socket s;
  uint16_t bound = 0;
  Result r = Listen(options_.listen_host, options_.listen_port, &s, &bound);
  if (!r.ok()) return Result::Failed(r.message());
  listener_ = std::make_shared<Socket>(std::move(s));
  listen_port_ = bound;
  auto listener = listener_;
  threads_.Spawn([this, listener] { AcceptLoop(listener); });
  // Same-host peers fetch memory descriptors over a Unix socket. Without
  // one (unusual sandboxes) links simply use TCP.
  Socket unix_listener;
  std::string name = MakeAbstractName();
  r = UnixListen(name, &unix_listener);
  if (r.ok()) {
    shm_listener_ = std::make_shared<Socket>(std::move(unix_listener));
    shm_socket_name_ = name;
    auto shm_listener = shm_listener_;
    threads_.Spawn([this, shm_listener] { AcceptShmLoop(shm_listener); });
  } else {
    shm_socket_name_.clear();
    LDD_LOG(Warn) << "no shared-memory socket (" << r.message() << "): links from this host will use TCP";
  }
  return Result::Ok();
}

void Engine::StopListening() {
  if (listener_) listener_->Shutdown();
  if (shm_listener_) shm_listener_->Shutdown();
}

std::shared_ptr<Socket> Engine::AdmitIncoming(Socket s, const std::string& peer) {
  if (pending_handshakes_.load() >= kMaxPendingHandshakes) {
    LDD_LOG(Warn) << "dropping connection from " << peer << ": " << kMaxPendingHandshakes
                  << " handshakes are already pending";
    return nullptr;
  }
  ++pending_handshakes_;
  auto socket = std::make_shared<Socket>(std::move(s));
  std::lock_guard<std::mutex> lock(links_mu_);
  handshaking_.erase(std::remove_if(handshaking_.begin(), handshaking_.end(), [](auto& w) { return w.expired(); }),
                     handshaking_.end());
  handshaking_.push_back(socket);
  return socket;
}

void Engine::AcceptShmLoop(std::shared_ptr<Socket> listener) {
  for (;;) {
    if (listener->shut_down() || stopping_) return;
    if (!WaitReadable(listener->fd(), Deadline::AfterMillis(100))) continue;
    int fd = ::accept4(listener->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        ::usleep(10000);
        continue;
      }
      if (errno == EINVAL) return;  // shut down
      continue;
    }
    auto socket = AdmitIncoming(Socket(fd), "a shared-memory peer");
    if (socket) threads_.Spawn([this, socket] { HandleShmIncoming(socket); });
  }
}

void Engine::HandleShmIncoming(std::shared_ptr<Socket> socket) {
  std::vector<uint8_t> message;
  std::vector<int> fds;
  FrameHeader h;
  std::vector<uint8_t> meta;
  ShmHello hello;
  Result r = UnixRecv(socket->fd(), &message, &fds, Deadline::AfterMillis(kHandshakeTimeoutMs));
  --pending_handshakes_;
  for (int fd : fds) ::close(fd);
  if (r.ok()) r = DecodeShmMessage(message, &h, &meta);
  if (r.ok() && h.type != MsgType::kShmHello) r = Result::Failed("first message is not SHM_HELLO");
  if (r.ok()) r = DecodeShmHello(meta, &hello);
  if (!r.ok()) {
    LDD_LOG(Warn) << "dropping shared-memory connection: " << r.message();
    return;
  }
  LinkPtr link;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    for (auto& [id, l] : links_)
      if (l->link_id() == hello.link_id && l->link_secret() == hello.link_secret && !l->closed() && l->shm()) link = l;
  }
  Status status = link ? LLM_SUCCESS : llm_datadist::LLM_NOT_YET_LINK;
  r = UnixSend(socket->fd(), EncodeShmMessage(MsgType::kShmHelloAck, h.request_id, status, {}), {},
               Deadline::AfterMillis(kHandshakeTimeoutMs));
  if (!link || !r.ok()) return;
  link->TrackSocket(socket);
  link->shm()->AttachChannel(socket);
  std::string why = link->shm()->Run();
  LDD_LOG(Debug) << "shared-memory channel of cluster " << link->remote_cluster_id() << " ended: " << why;
}

Result Engine::ChooseTransport(const Hello& hello, std::string* chosen) const {
  const std::string& mine = options_.backend;
  const std::string& theirs = hello.transport;
  if (theirs != "auto" && theirs != "tcp" && theirs != "shm")
    return Result::LinkFailed(Msg("data path '", theirs, "' is not available here (available: auto, shm, tcp)"));
  if ((mine == "tcp" && theirs == "shm") || (mine == "shm" && theirs == "tcp"))
    return Result::LinkFailed(Msg("one end forces 'shm', the other 'tcp'"));
  if (mine == "tcp" || theirs == "tcp") {
    *chosen = "tcp";
    return Result::Ok();
  }
  const bool forced = mine == "shm" || theirs == "shm";
  std::string why_not;
  if (hello.host_identity != host_identity_)
    why_not = "the peer is on another host, or in another network or pid namespace";
  else if (shm_socket_name_.empty())
    why_not = "this instance has no shared-memory socket";
  if (why_not.empty()) {
    *chosen = "shm";
    return Result::Ok();
  }
  if (forced) return Result::LinkFailed(Msg("'shm' data path impossible: ", why_not));
  *chosen = "tcp";
  return Result::Ok();
}

Result Engine::JoinShmChannel(const LinkPtr& link, const std::string& socket_name, Deadline deadline) {
  Socket s;
  Result r = UnixConnect(socket_name, deadline, &s);
  if (!r.ok()) return Result::LinkFailed(Msg("'shm' data path impossible: ", r.message()));
  ShmHello hello{link->link_id(), link->link_secret()};
  LDD_RETURN_IF_ERROR(UnixSend(s.fd(), EncodeShmMessage(MsgType::kShmHello, 1, 0, EncodeShmHello(hello)), {}, deadline));
  std::vector<uint8_t> message;
  std::vector<int> fds;
  r = UnixRecv(s.fd(), &message, &fds, deadline);
  for (int fd : fds) ::close(fd);
  FrameHeader h;
  std::vector<uint8_t> meta;
  if (r.ok()) r = DecodeShmMessage(message, &h, &meta);
  if (r.ok() && (h.type != MsgType::kShmHelloAck || h.status != LLM_SUCCESS))
    r = Result::LinkFailed("the peer refused the shared-memory channel");
  if (!r.ok()) return Result::LinkFailed(r.message());
  auto socket = std::make_shared<Socket>(std::move(s));
  link->TrackSocket(socket);
  link->shm()->AttachChannel(socket);
  return Result::Ok();
}

void Engine::RevokeFromPeers(const std::vector<uint64_t>& region_ids) {
  std::vector<LinkPtr> links;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    for (auto& [id, link] : links_)
      if (link->shm() != nullptr && !link->closed()) links.push_back(link);
  }
  // A peer that does not confirm in time is hung or gone; its mapping keeps
  // the pages alive, so our freeing them cannot hurt it.
  const Deadline deadline = Deadline::AfterMillis(2000);
  std::vector<std::future<Result>> pending;
  for (auto& link : links)
    pending.push_back(std::async(std::launch::async, [&, link] { return link->endpoint().Revoke(region_ids, deadline); }));
  for (size_t i = 0; i < pending.size(); ++i) {
    Result r = pending[i].get();
    if (!r.ok())
      LDD_LOG(Warn) << "cluster " << links[i]->remote_cluster_id() << " did not confirm a revocation: " << r.message();
  }
}

void Engine::AcceptLoop(std::shared_ptr<Socket> listener) {
  for (;;) {
    Socket s;
    std::string peer;
    Result r = Accept(*listener, &s, &peer);
    if (!r.ok()) {
      LDD_LOG(Error) << "listener stopped: " << r.message();
      return;
    }
    if (!s.valid() || stopping_) return;
    TuneForTransfer(s.fd());
    auto socket = AdmitIncoming(std::move(s), peer);
    if (socket) threads_.Spawn([this, socket, peer] { HandleIncoming(socket, peer); });
  }
}

void Engine::HandleIncoming(std::shared_ptr<Socket> socket, std::string peer) {
  FrameHeader h;
  std::vector<uint8_t> meta;
  Hello hello;
  Result r = RecvFrame(socket->fd(), &h, &meta, Deadline::AfterMillis(kHandshakeTimeoutMs), kHelloMetaLimit);
  --pending_handshakes_;
  if (r.ok() && h.type != MsgType::kHello) r = Result::Failed("first frame is not HELLO");
  if (r.ok()) r = DecodeHello(meta, &hello);
  if (!r.ok()) {
    LDD_LOG(Warn) << "dropping connection from " << peer << ": " << r.message();
    return;
  }
  HelloAck ack;
  ack.cluster_id = cluster_id_;
  ack.role = static_cast<int32_t>(role_);

  if (hello.kind == ConnKind::kControl) {
    Result auth = AuthenticatePeer(socket->fd(), hello, h.request_id);
    if (!auth.ok()) {
      ack.error = auth.message();
      (void)SendHelloAck(socket->fd(), h.request_id, auth.code(), ack);
      LDD_LOG(Warn) << "refused link from cluster " << hello.cluster_id << " at " << peer << ": " << auth.message();
      return;
    }
    LinkPtr link;
    std::string why;
    Status status = AcceptControl(socket, hello, peer, &link, &why);
    ack.error = why;
    if (link) {
      ack.link_id = link->link_id();
      ack.link_secret = link->link_secret();
      ack.transport = link->endpoint().name();
      ack.shm_socket = shm_socket_name_;
    }
    Result sent = SendHelloAck(socket->fd(), h.request_id, status, ack);
    if (status != LLM_SUCCESS) {
      LDD_LOG(Warn) << "refused link from cluster " << hello.cluster_id << " at " << peer << ": " << why;
      return;
    }
    if (!sent.ok()) {
      RemoveLink(link);
      link->Close("handshake failed");
      return;
    }
    LDD_LOG(Info) << "cluster " << cluster_id_ << " accepted link from cluster " << hello.cluster_id << " at " << peer;
    RunControl(link);
    return;
  }

  LinkPtr link;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    auto it = links_.find(hello.cluster_id);
    if (it != links_.end() && it->second->link_id() == hello.link_id &&
        it->second->link_secret() == hello.link_secret && !it->second->closed())
      link = it->second;
  }
  // A linked peer gets the connections its pool can use (twice the width,
  // for bursts) and a little slack, not one thread per connection it opens.
  if (link && link->TrackedSockets() > 2 * static_cast<size_t>(options_.tcp_connections) + 8) {
    ack.error = "too many data connections on this link";
    (void)SendHelloAck(socket->fd(), h.request_id, llm_datadist::LLM_LINK_BUSY, ack);
    LDD_LOG(Warn) << "refused data connection from " << peer << ": too many on the link of cluster "
                  << hello.cluster_id;
    return;
  }
  if (!link) {
    ack.error = "no such link";
    (void)SendHelloAck(socket->fd(), h.request_id, llm_datadist::LLM_NOT_YET_LINK, ack);
    LDD_LOG(Warn) << "refused data connection from " << peer << ": it names no live link";
    return;
  }
  if (!SendHelloAck(socket->fd(), h.request_id, LLM_SUCCESS, ack).ok()) return;
  if (hello.kind == ConnKind::kDataReverse) {
    link->pool().Offer(socket);
    return;
  }
  link->TrackSocket(socket);
  std::string why = ServeDataConnection(*socket, regions_);
  LDD_LOG(Debug) << "data connection from cluster " << hello.cluster_id << " ended: " << why;
}

Result Engine::AuthenticatePeer(int fd, const Hello& hello, uint64_t request_id) {
  const std::string& token = options_.link_token;
  if (token.empty() && hello.auth_nonce.empty()) return Result::Ok();
  if (token.empty())
    return Result::LinkFailed(Msg("the client offers a link token but this server has none (", kOptionLinkToken, ")"));
  if (hello.auth_nonce.size() != kAuthNonceBytes)
    return Result::LinkFailed(Msg("this server requires a link token (option ", kOptionLinkToken, ")"));
  const Deadline deadline = Deadline::AfterMillis(kHandshakeTimeoutMs);
  AuthChallenge challenge;
  challenge.nonce = MakeAuthNonce();
  challenge.proof = AuthProof(token, "server", hello.auth_nonce, challenge.nonce);
  FrameHeader h;
  h.type = MsgType::kAuthChallenge;
  h.request_id = request_id;
  LDD_RETURN_IF_ERROR(SendFrame(fd, h, EncodeAuthChallenge(challenge), deadline));
  FrameHeader rh;
  std::vector<uint8_t> proof;
  LDD_RETURN_IF_ERROR(RecvFrame(fd, &rh, &proof, deadline, 256));
  if (rh.type != MsgType::kAuthProof) return Result::LinkFailed("expected AUTH_PROOF");
  if (!AuthProofMatches(AuthProof(token, "client", challenge.nonce, hello.auth_nonce), proof))
    return Result::LinkFailed("link token mismatch: the client does not know this server's token");
  return Result::Ok();
}

bool Engine::LinkIsStale(const LinkPtr& existing, const Hello& hello) {
  if (existing->remote_instance() == hello.instance_id) return true;  // the peer itself re-links
  // Another instance claims the cluster id: the old one is stale only if it
  // no longer answers (it restarted, or its network went away).
  return !PeerAnswers(existing, Deadline::AfterMillis(1000));
}

bool Engine::PeerAnswers(const LinkPtr& link, Deadline deadline) {
  Reply reply;
  return link->control().Call(MsgType::kCacheQuery, EncodeCacheId(0), deadline, &reply).ok();
}

Status Engine::AcceptControl(const std::shared_ptr<Socket>& socket, const Hello& hello, const std::string& peer,
                             LinkPtr* out, std::string* why) {
  if (hello.cluster_id == cluster_id_) {
    *why = Msg("cluster id ", cluster_id_, " is this instance's own");
    return llm_datadist::LLM_LINK_FAILED;
  }
  std::string transport;
  Result chosen = ChooseTransport(hello, &transport);
  if (!chosen.ok()) {
    *why = chosen.message();
    return chosen.code();
  }
  auto link = std::make_shared<lldd::Link>(hello.cluster_id, false, RandomU64(), RandomU64());
  link->set_remote_instance(hello.instance_id);
  AttachChannels(link, socket, "", 0, "", transport);
  LinkPtr existing;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    auto it = links_.find(hello.cluster_id);
    if (it != links_.end() && !it->second->closed()) existing = it->second;
  }
  if (existing && LinkIsStale(existing, hello)) existing->Close("replaced by a new link from the same cluster");
  LinkPtr replaced;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    if (stopping_) {
      *why = "instance is finalizing";
      return llm_datadist::LLM_LINK_FAILED;
    }
    auto it = links_.find(hello.cluster_id);
    if (it != links_.end() && !it->second->closed()) {
      *why = Msg("cluster ", hello.cluster_id, " is already linked (duplicate cluster id?)");
      return llm_datadist::LLM_LINK_FAILED;
    }
    if (it == links_.end() && links_.size() >= llm_datadist::kMaxClusterNum) {
      *why = Msg("this instance already has ", links_.size(), " links, the maximum");
      return llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT;
    }
    if (it != links_.end()) replaced = it->second;
    links_[hello.cluster_id] = link;
  }
  if (replaced) LDD_LOG(Info) << "cluster " << hello.cluster_id << " re-linked from " << peer << "; old link dropped";
  EnableKeepAlive(socket->fd(), kKeepAliveIdleS, kKeepAliveIntervalS, kKeepAliveCount);
  *out = link;
  return LLM_SUCCESS;
}

void Engine::AttachChannels(const LinkPtr& link, const std::shared_ptr<Socket>& control_socket,
                            const std::string& host, uint16_t port, const std::string& local_host,
                            const std::string& transport) {
  link->set_address({host, port, local_host});
  std::weak_ptr<lldd::Link> weak = link;
  auto control = std::make_shared<ControlChannel>(
      control_socket, [this, weak](MsgType type, const std::vector<uint8_t>& meta) { return HandleControl(weak, type, meta); });
  ConnectionPool::Dialer dialer;
  if (link->initiator()) {
    dialer = [this, weak](Deadline deadline, SocketPtr* out) -> Result {
      LinkPtr l = weak.lock();
      if (!l) return Result::LinkFailed("link closed");
      const auto& a = l->address();
      return DialData(l, ConnKind::kDataForward, a.host, a.port, a.local_host, deadline, out);
    };
  } else {
    // We cannot dial a client (it may not listen): ask it to dial us.
    dialer = [weak](Deadline deadline, SocketPtr*) -> Result {
      LinkPtr l = weak.lock();
      if (!l) return Result::LinkFailed("link closed");
      Reply reply;
      LDD_RETURN_IF_ERROR(l->control().Call(MsgType::kOpenReverse, {}, deadline, &reply));
      if (reply.status != LLM_SUCCESS)
        return Result::LinkFailed(Msg("peer could not open a data connection: ", DecodeText(reply.meta)));
      return Result::Ok();
    };
  }
  auto pool = std::make_shared<ConnectionPool>(options_.tcp_connections, std::move(dialer));
  std::unique_ptr<Endpoint> endpoint = std::make_unique<TcpEndpoint>(pool);
  if (transport == "shm")
    endpoint = std::make_unique<ShmEndpoint>(regions_, std::move(endpoint), link->remote_cluster_id(),
                                             options_.copy_threads);
  link->Attach(control, pool, std::move(endpoint));
  link->TrackSocket(control_socket);
}

Reply Engine::HandleControl(const std::weak_ptr<lldd::Link>& weak, MsgType type, const std::vector<uint8_t>& meta) {
  LinkPtr link = weak.lock();
  if (!link) return {llm_datadist::LLM_LINK_FAILED, EncodeText("link closed")};
  switch (type) {
    case MsgType::kCacheQuery: {
      int64_t id = 0;
      if (!DecodeCacheId(meta, &id).ok()) return {llm_datadist::LLM_PARAM_INVALID, EncodeText("malformed cache query")};
      auto cache = caches_.Find(id);
      if (!cache)
        return {llm_datadist::LLM_KV_CACHE_NOT_EXIST,
                EncodeText(Msg("cluster ", cluster_id_, " has no cache ", id))};
      return {LLM_SUCCESS, EncodeCacheInfo({id, cache->ToRemoteDesc()})};
    }
    case MsgType::kUnlink: {
      LDD_LOG(Info) << "cluster " << link->remote_cluster_id() << " unlinked from cluster " << cluster_id_;
      RemoveLink(link);
      link->pool().Close();
      link->control().StopAfterReply();
      return {LLM_SUCCESS, {}};
    }
    case MsgType::kOpenReverse: {
      if (!link->initiator()) return {llm_datadist::LLM_PARAM_INVALID, EncodeText("only the connecting side dials")};
      const auto& a = link->address();
      SocketPtr socket;
      Result r = DialData(link, ConnKind::kDataReverse, a.host, a.port, a.local_host,
                          Deadline::AfterMillis(kHandshakeTimeoutMs), &socket);
      if (!r.ok()) return {r.code(), EncodeText(r.message())};
      link->TrackSocket(socket);
      threads_.Spawn([this, socket] { ServeDataConnection(*socket, regions_); });
      return {LLM_SUCCESS, {}};
    }
    default:
      return {llm_datadist::LLM_PARAM_INVALID, EncodeText("unsupported control request")};
  }
}

Result Engine::DialData(const LinkPtr& link, ConnKind kind, const std::string& host, uint16_t port,
                        const std::string& local_host, Deadline deadline, std::shared_ptr<Socket>* out) {
  Socket s;
  LDD_RETURN_IF_ERROR(Connect(host, port, local_host, deadline, &s));
  Hello hello;
  hello.kind = kind;
  hello.cluster_id = cluster_id_;
  hello.role = static_cast<int32_t>(role_);
  hello.link_id = link->link_id();
  hello.link_secret = link->link_secret();
  HelloAck ack;
  LDD_RETURN_IF_ERROR(Handshake(s.fd(), hello, "", deadline, &ack));
  *out = std::make_shared<Socket>(std::move(s));
  return Result::Ok();
}

void Engine::RunControl(const LinkPtr& link) {
  std::string why = link->control().Run();
  bool current = false;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    auto it = links_.find(link->remote_cluster_id());
    current = it != links_.end() && it->second == link;
  }
  if (current && !link->closed()) {
    LDD_LOG(Warn) << "link to cluster " << link->remote_cluster_id() << " broke: " << why;
    link->MarkBroken(Msg("control connection lost (", why.empty() ? "closed by peer" : why, ")"));
  } else {
    link->Close("unlinked");
  }
}

void Engine::RemoveLink(const LinkPtr& link) {
  std::lock_guard<std::mutex> lock(links_mu_);
  auto it = links_.find(link->remote_cluster_id());
  if (it != links_.end() && it->second == link) links_.erase(it);
}

Result Engine::FindLink(uint64_t cluster_id, LinkPtr* link) {
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    auto it = links_.find(cluster_id);
    if (it == links_.end()) return Result::NotYetLink(Msg("cluster ", cluster_id, " is not linked"));
    *link = it->second;
  }
  return (*link)->CheckUsable();
}

const char* Engine::LinkTransport(uint64_t remote_cluster_id) {
  LinkPtr link;
  if (!FindLink(remote_cluster_id, &link).ok()) return "";
  return link->endpoint().name();
}

Result Engine::Link(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets, int32_t timeout_ms) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  rets.assign(clusters.size(), llm_datadist::LLM_FAILED);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (clusters.empty()) return Result::ParamInvalid("no clusters given");
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  if (clusters.size() > llm_datadist::kMaxClusterNum)
    return Result(llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT, Msg(clusters.size(), " clusters exceed the limit of ",
                                                                  llm_datadist::kMaxClusterNum));
  const Deadline deadline = Deadline::AfterMillis(timeout_ms);
  std::vector<Result> results(clusters.size());
  // Clusters link in parallel so that the whole call honours the timeout.
  std::vector<std::future<Result>> pending;
  for (size_t i = 0; i < clusters.size(); ++i)
    pending.push_back(std::async(std::launch::async, [&, i] { return LinkOne(clusters[i], deadline); }));
  Result first_failure;
  for (size_t i = 0; i < clusters.size(); ++i) {
    results[i] = pending[i].get();
    rets[i] = results[i].code();
    if (!results[i].ok() && first_failure.ok())
      first_failure = results[i].WithContext(Msg("cluster ", clusters[i].remote_cluster_id));
  }
  return first_failure;
}

Result Engine::LinkOne(const ClusterInfo& cluster, Deadline deadline) {
  if (cluster.remote_ip_infos.size() != 1)
    return Result::ParamInvalid(Msg("remote_ip_infos must hold exactly one entry, not ", cluster.remote_ip_infos.size()));
  if (cluster.local_ip_infos.size() > 1) return Result::ParamInvalid("local_ip_infos may hold at most one entry");
  const std::string host = cluster.remote_ip_infos[0].ip.GetString();
  const uint16_t port = cluster.remote_ip_infos[0].port;
  if (!IsNumericAddress(host)) return Result::ParamInvalid(Msg("remote ip '", host, "' is not a numeric IP address"));
  if (port == 0) return Result::ParamInvalid("remote port must not be 0");
  std::string local_host;
  if (!cluster.local_ip_infos.empty()) {
    local_host = cluster.local_ip_infos[0].ip.GetString();
    if (!local_host.empty() && !IsNumericAddress(local_host))
      return Result::ParamInvalid(Msg("local ip '", local_host, "' is not a numeric IP address"));
  }
  if (cluster.remote_cluster_id == cluster_id_)
    return Result::ParamInvalid(Msg("cluster id ", cluster_id_, " is this instance's own"));
  LinkPtr existing;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    auto it = links_.find(cluster.remote_cluster_id);
    if (it != links_.end() && !it->second->closed()) existing = it->second;
    if (it == links_.end() && links_.size() >= llm_datadist::kMaxClusterNum)
      return Result(llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT,
                    Msg("already ", links_.size(), " links, the maximum"));
  }
  // A link that still looks alive may belong to a peer that just died or
  // restarted (its connection's end not seen yet): ask it before refusing.
  if (existing) {
    if (PeerAnswers(existing, deadline.Earlier(Deadline::AfterMillis(500))))
      return Result::AlreadyLink(Msg("cluster ", cluster.remote_cluster_id, " is already linked"));
    existing->MarkBroken("the peer stopped answering");
  }

  Socket s;
  Result r = Connect(host, port, local_host, deadline, &s);
  if (!r.ok()) return Result::LinkFailed(r.message());
  Hello hello;
  hello.kind = ConnKind::kControl;
  hello.cluster_id = cluster_id_;
  hello.instance_id = instance_id_;
  hello.role = static_cast<int32_t>(role_);
  hello.transport = options_.backend;
  hello.host_identity = host_identity_;
  if (!options_.link_token.empty()) hello.auth_nonce = MakeAuthNonce();
  HelloAck ack;
  r = Handshake(s.fd(), hello, options_.link_token, deadline, &ack);
  // A refusal still names the server, and talking to the wrong server is
  // the more useful thing to report.
  if (ack.cluster_id != 0 && ack.cluster_id != cluster.remote_cluster_id)
    return Result::LinkFailed(Msg("the server at ", host, ":", port, " is cluster ", ack.cluster_id, ", not ",
                                  cluster.remote_cluster_id));
  if (!r.ok()) {
    return r.code() == llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT ? r : Result::LinkFailed(r.message());
  }
  EnableKeepAlive(s.fd(), kKeepAliveIdleS, kKeepAliveIntervalS, kKeepAliveCount);
  auto socket = std::make_shared<Socket>(std::move(s));
  if (ack.transport != "tcp" && ack.transport != "shm")
    return Result::LinkFailed(Msg("the peer chose an unknown data path '", ack.transport, "'"));
  auto link = std::make_shared<lldd::Link>(cluster.remote_cluster_id, true, ack.link_id, ack.link_secret);
  AttachChannels(link, socket, host, port, local_host, ack.transport);
  if (ack.transport == "shm") {
    r = JoinShmChannel(link, ack.shm_socket, deadline);
    if (!r.ok()) {
      link->Close("shared-memory channel failed");
      return r;
    }
  }
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    auto it = links_.find(cluster.remote_cluster_id);
    if (stopping_ || (it != links_.end() && !it->second->closed())) {
      link->Close("superseded");
      return stopping_ ? Result::LinkFailed("instance is finalizing")
                       : Result::AlreadyLink(Msg("cluster ", cluster.remote_cluster_id, " is already linked"));
    }
    if (it != links_.end()) it->second->Close("replaced by a new link");
    links_[cluster.remote_cluster_id] = link;
  }
  threads_.Spawn([this, link] { RunControl(link); });
  if (link->shm() != nullptr) threads_.Spawn([link] { link->shm()->Run(); });
  LDD_LOG(Info) << "cluster " << cluster_id_ << " linked to cluster " << cluster.remote_cluster_id << " at " << host
                << ":" << port;
  return Result::Ok();
}

Result Engine::Unlink(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets, int32_t timeout_ms,
                      bool force) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  rets.assign(clusters.size(), llm_datadist::LLM_FAILED);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (clusters.empty()) return Result::ParamInvalid("no clusters given");
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  const Deadline deadline = Deadline::AfterMillis(timeout_ms);
  std::vector<std::future<Result>> pending;
  for (const auto& c : clusters)
    pending.push_back(std::async(std::launch::async, [&, c] { return UnlinkOne(c, deadline, force); }));
  Result first_failure;
  for (size_t i = 0; i < clusters.size(); ++i) {
    Result r = pending[i].get();
    rets[i] = r.code();
    if (!r.ok() && first_failure.ok()) first_failure = r.WithContext(Msg("cluster ", clusters[i].remote_cluster_id));
  }
  return first_failure;
}

Result Engine::UnlinkOne(const ClusterInfo& cluster, Deadline deadline, bool force) {
  LinkPtr link;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    auto it = links_.find(cluster.remote_cluster_id);
    if (it == links_.end()) return Result::NotYetLink(Msg("cluster ", cluster.remote_cluster_id, " is not linked"));
    link = it->second;
  }
  if (!force && !link->closed()) {
    Reply reply;
    Result r = link->control().Call(MsgType::kUnlink, {}, deadline, &reply);
    if (!r.ok())
      return Result::UnlinkFailed(Msg("the peer did not confirm the unlink (", r.message(),
                                      "); unlink with force_flag=true to drop the local end"));
  }
  RemoveLink(link);
  link->Close("unlinked");
  return Result::Ok();
}

Result Engine::AllocateCache(const llm_datadist::CacheDesc& desc, llm_datadist::Cache& cache) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Allocate(desc, &cache);
}

Result Engine::DeallocateCache(int64_t cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Remove(cache_id, true, [this](const std::vector<uint64_t>& ids) { RevokeFromPeers(ids); });
}

Result Engine::RegisterKvCache(const llm_datadist::CacheDesc& desc, const std::vector<uint64_t>& addrs,
                               int64_t& cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Register(desc, addrs, &cache_id);
}

Result Engine::UnregisterKvCache(int64_t cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Remove(cache_id, false, [this](const std::vector<uint64_t>& ids) { RevokeFromPeers(ids); });
}

}  // namespace lldd
