// One linked peer: its control channel, the data paths (endpoints) the two
// ends agreed on, and what we know of its caches.
//
// A link ends in one of two ways: Close() (unlink, here or by the peer) or
// its control connection dying, which marks it broken: calls then fail with
// LLM_LINK_FAILED and the reason, until it is unlinked or replaced by a new
// link to the same cluster. Thread-safe.
#ifndef LLM_DATADIST_SRC_ENGINE_LINK_H_
#define LLM_DATADIST_SRC_ENGINE_LINK_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control/control_channel.h"
#include "control/protocol.h"
#include "transport/transport.h"

namespace lldd {

// One agreed data path of a link.
struct LinkPath {
  Transport* transport = nullptr;
  TransportCaps caps;
  std::shared_ptr<Endpoint> endpoint;
};

class Link : public LinkHandle, public std::enable_shared_from_this<Link> {
 public:
  // How the engine opens a connection that joins this link (DialJoin).
  using JoinDialer = std::function<Result(Link& link, const std::string& transport,
                                          const std::vector<uint8_t>& join_info, Deadline deadline,
                                          std::shared_ptr<Socket>* out)>;
  using Spawner = std::function<void(std::function<void()>)>;

  Link(uint64_t remote_cluster_id, bool initiator, uint64_t link_id, uint64_t link_secret, JoinDialer dialer,
       Spawner spawner)
      : remote_cluster_id_(remote_cluster_id),
        initiator_(initiator),
        link_id_(link_id),
        link_secret_(link_secret),
        dialer_(std::move(dialer)),
        spawner_(std::move(spawner)) {}

  // LinkHandle.
  uint64_t remote_cluster_id() const override { return remote_cluster_id_; }
  bool initiator() const override { return initiator_; }
  uint64_t link_id() const override { return link_id_; }
  uint64_t link_secret() const override { return link_secret_; }
  Result CallPeer(const std::string& transport, const std::vector<uint8_t>& request, Deadline deadline,
                  std::vector<uint8_t>* reply) override;
  Result DialJoin(const std::string& transport, const std::vector<uint8_t>& join_info, Deadline deadline,
                  std::shared_ptr<Socket>* out) override;
  void TrackSocket(const std::shared_ptr<Socket>& socket) override;
  size_t TrackedSockets() const override;
  // A connection this side is dialing for the link (a data connection's
  // handshake): shut down if the link closes meanwhile, so that Finalize or
  // an unlink never waits for a frozen peer to answer it.
  void TrackDial(const std::shared_ptr<Socket>& socket);
  void Spawn(std::function<void()> fn) override { spawner_(std::move(fn)); }
  bool closed() const override { return closed_.load(); }

  // Where the connecting side dials (its peer's listener).
  struct Address {
    std::string host;
    uint16_t port = 0;
    std::string local_host;
  };
  void set_address(Address a) { address_ = std::move(a); }
  const Address& address() const { return address_; }
  // The peer instance's random id (from its HELLO), to tell its restart
  // from another instance that claims the same cluster id.
  void set_remote_instance(uint64_t id) { remote_instance_ = id; }
  uint64_t remote_instance() const { return remote_instance_; }
  // The peer's instance id as the directory listed it when we linked by
  // cluster id (0 otherwise): its entry's removal ends this link.
  void set_listed_instance(uint64_t id) { listed_instance_ = id; }
  uint64_t listed_instance() const { return listed_instance_; }
  // Whether this side's application linked it (LinkLlmClusters made it, or
  // adopted the peer's link when both linked to each other). A link both
  // sides hold stays until both have unlinked it.
  bool held() const { return held_.load(); }
  void set_held(bool held) { held_.store(held); }
  bool ReleaseHold() { return held_.exchange(false); }
  // An accepted link is answered once its HELLO_ACK is sent.
  bool answered() const { return answered_.load(); }
  void set_answered(bool answered = true) { answered_.store(answered); }

  void set_control(std::shared_ptr<ControlChannel> control) { control_ = std::move(control); }
  ControlChannel& control() { return *control_; }
  // Adds an agreed path (in preference order); all are added before the
  // link is published.
  void AddPath(LinkPath path) { paths_.push_back(std::move(path)); }
  const std::vector<LinkPath>& paths() const { return paths_; }
  // The endpoint of a transport on this link, or null.
  std::shared_ptr<Endpoint> EndpointOf(const std::string& transport) const;
  // The first path that moves `local_kind` memory here to or from
  // `remote_kind` memory at the peer; null (and why) if none does.
  Endpoint* PathFor(uint32_t local_kind, uint32_t remote_kind, std::string* why) const;
  // The preferred path's name ("" before any path exists).
  const char* primary_path() const;

  // Remote cache descriptors, fetched on first use and cached; ids are
  // never reused, so a cached descriptor is only ever stale by being gone.
  Result GetRemoteCache(int64_t cache_id, Deadline deadline, RemoteDesc* desc);
  void ForgetRemoteCache(int64_t cache_id);

  // Requests of the peer's transports served now (Endpoint::OnPeerCall,
  // each on a thread of its own, as it may block): at most
  // kMaxPeerCallsPerLink at once, so a peer cannot make us start threads
  // without limit. TryBeginPeerCall is false when the link is at the limit.
  static constexpr int kMaxPeerCallsPerLink = 32;
  bool TryBeginPeerCall();
  void EndPeerCall() { --peer_calls_; }

  void Close(const std::string& reason);
  void MarkBroken(const std::string& reason);
  // LLM_LINK_FAILED with the reason once the link is broken or closed.
  Result CheckUsable() const;

 private:
  const uint64_t remote_cluster_id_;
  const bool initiator_;
  const uint64_t link_id_;
  const uint64_t link_secret_;
  const JoinDialer dialer_;
  const Spawner spawner_;
  Address address_;
  uint64_t remote_instance_ = 0;
  uint64_t listed_instance_ = 0;
  std::atomic<bool> held_{false};
  std::atomic<bool> answered_{true};
  std::shared_ptr<ControlChannel> control_;
  std::vector<LinkPath> paths_;

  mutable std::mutex mu_;
  // Adds `socket` to `list` (mu_ taken), or shuts it down if the link is closed.
  void Track(std::vector<std::weak_ptr<Socket>>* list, const std::shared_ptr<Socket>& socket);
  std::vector<std::weak_ptr<Socket>> served_;
  std::vector<std::weak_ptr<Socket>> dialing_;
  std::map<int64_t, RemoteDesc> remote_caches_;
  std::string broken_reason_;
  std::atomic<bool> closed_{false};
  std::atomic<int> peer_calls_{0};
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_LINK_H_
