// One linked peer: its control channel, its data path, and what we know of
// its caches.
//
// A link ends in one of two ways: Close() (unlink, here or by the peer) or
// its control connection dying, which marks it broken: calls then fail with
// LLM_LINK_FAILED and the reason, until it is unlinked or replaced by a new
// link to the same cluster. Thread-safe.
#ifndef LLM_DATADIST_SRC_ENGINE_LINK_H_
#define LLM_DATADIST_SRC_ENGINE_LINK_H_

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control/control_channel.h"
#include "control/protocol.h"
#include "transport/endpoint.h"
#include "transport/shm/shm_endpoint.h"
#include "transport/tcp/connection_pool.h"

namespace lldd {

class Link {
 public:
  Link(uint64_t remote_cluster_id, bool initiator, uint64_t link_id, uint64_t link_secret)
      : remote_cluster_id_(remote_cluster_id), initiator_(initiator), link_id_(link_id), link_secret_(link_secret) {}

  uint64_t remote_cluster_id() const { return remote_cluster_id_; }
  bool initiator() const { return initiator_; }
  uint64_t link_id() const { return link_id_; }
  uint64_t link_secret() const { return link_secret_; }

  // Where the connecting side dials data connections.
  struct Address {
    std::string host;
    uint16_t port = 0;
    std::string local_host;
  };
  void set_address(Address a) { address_ = std::move(a); }
  // The peer instance's random id (from its HELLO), to tell its restart
  // from another instance that claims the same cluster id.
  void set_remote_instance(uint64_t id) { remote_instance_ = id; }
  uint64_t remote_instance() const { return remote_instance_; }
  const Address& address() const { return address_; }

  void Attach(std::shared_ptr<ControlChannel> control, std::shared_ptr<ConnectionPool> pool,
              std::unique_ptr<Endpoint> endpoint);
  ControlChannel& control() { return *control_; }
  ConnectionPool& pool() { return *pool_; }
  Endpoint& endpoint() { return *endpoint_; }
  // The same-host endpoint, when this link uses one.
  ShmEndpoint* shm() { return dynamic_cast<ShmEndpoint*>(endpoint_.get()); }

  // Data connections this side serves; shut down when the link ends.
  void TrackSocket(const std::shared_ptr<Socket>& socket);
  // How many tracked connections are still open.
  size_t TrackedSockets() const;

  // Remote cache descriptors, fetched on first use and cached; ids are
  // never reused, so a cached descriptor is only ever stale by being gone.
  Result GetRemoteCache(int64_t cache_id, Deadline deadline, RemoteDesc* desc);
  void ForgetRemoteCache(int64_t cache_id);

  void Close(const std::string& reason);
  void MarkBroken(const std::string& reason);
  // LLM_LINK_FAILED with the reason once the link is broken or closed.
  Result CheckUsable() const;
  bool closed() const { return closed_.load(); }

 private:
  const uint64_t remote_cluster_id_;
  const bool initiator_;
  const uint64_t link_id_;
  const uint64_t link_secret_;
  Address address_;
  uint64_t remote_instance_ = 0;
  std::shared_ptr<ControlChannel> control_;
  std::shared_ptr<ConnectionPool> pool_;
  std::unique_ptr<Endpoint> endpoint_;

  mutable std::mutex mu_;
  std::vector<std::weak_ptr<Socket>> served_;
  std::map<int64_t, RemoteDesc> remote_caches_;
  std::string broken_reason_;
  std::atomic<bool> closed_{false};
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_LINK_H_
