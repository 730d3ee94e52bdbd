#include "transport/tcp/tcp_transport.h"

#include <algorithm>
#include <thread>

#include "common/logging.h"
#include "transport/tcp/connection_pool.h"
#include "transport/tcp/data_server.h"
#include "transport/tcp/tcp_endpoint.h"

namespace lldd {
namespace {

class TcpTransport : public Transport {
 public:
  const char* name() const override { return "tcp"; }
  TransportCaps caps() const override { return TransportCaps{}; }

  Result Start(const TransportConfig& config, RegionTable& regions, size_t slot) override {
    (void)slot;
    regions_ = &regions;
    connections_ = config.connections > 0 ? config.connections : DefaultTcpConnections();
    return Result::Ok();
  }
  void Stop() override {}

  Result LocalInfo(std::vector<uint8_t>* info) const override {
    info->clear();  // the engine's own listener is all a peer needs
    return Result::Ok();
  }
  Result CanReach(const std::vector<uint8_t>& peer_info) const override {
    (void)peer_info;
    return Result::Ok();
  }

  Result Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                 std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) override {
    (void)peer_info;
    (void)fallback;
    (void)deadline;
    std::weak_ptr<LinkHandle> weak = link;
    ConnectionPool::Dialer dialer;
    if (link->initiator()) {
      dialer = [weak](Deadline d, SocketPtr* socket) -> Result {
        auto l = weak.lock();
        if (!l) return Result::LinkFailed("link closed");
        return l->DialJoin("tcp", {static_cast<uint8_t>(TcpJoin::kForward)}, d, socket);
      };
    } else {
      // We cannot dial a client (it may not listen): ask it to dial us.
      dialer = [weak](Deadline d, SocketPtr*) -> Result {
        auto l = weak.lock();
        if (!l) return Result::LinkFailed("link closed");
        std::vector<uint8_t> reply;
        Result r = l->CallPeer("tcp", {static_cast<uint8_t>(TcpEndpoint::kOpenReverse)}, d, &reply);
        if (!r.ok() && r.code() != llm_datadist::LLM_TIMEOUT)
          return Result::LinkFailed(Msg("peer could not open a data connection: ", r.message()));
        return r;
      };
    }
    auto pool = std::make_shared<ConnectionPool>(connections_, std::move(dialer));
    *out = std::make_shared<TcpEndpoint>(pool, link, *regions_);
    return Result::Ok();
  }

  Result AdmitJoin(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& join_info) override {
    if (join_info.size() != 1 || (join_info[0] != static_cast<uint8_t>(TcpJoin::kForward) &&
                                  join_info[0] != static_cast<uint8_t>(TcpJoin::kReverse)))
      return Result::ParamInvalid("malformed tcp join");
    // A linked peer gets the connections its pool can use (twice the width,
    // for bursts) and a little slack, not one thread per connection it opens.
    if (link->TrackedSockets() > 2 * static_cast<size_t>(connections_) + 8)
      return Result(llm_datadist::LLM_LINK_BUSY, "too many data connections on this link");
    return Result::Ok();
  }

  void AcceptJoin(const std::shared_ptr<LinkHandle>& link, const std::shared_ptr<Endpoint>& endpoint,
                  std::shared_ptr<Socket> socket, const std::vector<uint8_t>& join_info) override {
    auto tcp = std::static_pointer_cast<TcpEndpoint>(endpoint);
    if (join_info[0] == static_cast<uint8_t>(TcpJoin::kReverse)) {
      tcp->OfferConnection(std::move(socket));
      return;
    }
    link->TrackSocket(socket);
    std::string why = ServeDataConnection(*socket, *regions_);
    LDD_LOG(Debug) << "data connection from cluster " << link->remote_cluster_id() << " ended: " << why;
  }

 private:
  RegionTable* regions_ = nullptr;
  uint32_t connections_ = 4;
};

}  // namespace

uint32_t DefaultTcpConnections() {
  // One stream moves a few GB/s at most and a core drives about one: use the
  // cores, at least 4 (small machines still gain from overlap) and at most
  // 16 (beyond that, loopback and NICs stop scaling).
  unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<uint32_t>(cores, 4, 16);
}

std::unique_ptr<Transport> MakeTcpTransport() { return std::make_unique<TcpTransport>(); }

}  // namespace lldd
