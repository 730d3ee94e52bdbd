#include "transport/tcp/tcp_transport.h"

#include <algorithm>
#include <thread>

#include "common/logging.h"
#include "common/wire.h"
#include "transport/tcp/device_staging.h"
#include "transport/tcp/connection_pool.h"
#include "transport/tcp/data_server.h"
#include "transport/tcp/tcp_endpoint.h"

namespace lldd {
namespace {

class TcpTransport : public Transport {
 public:
  const char* name() const override { return "tcp"; }
  TransportCaps caps() const override {
    TransportCaps c;
    // With a GPU, GPU memory travels through pinned staging slabs on both
    // sides (transport/tcp/device_staging.h).
    if (Gpu().Available(nullptr)) c.local_memory = c.remote_memory = kAnyMemory;
    return c;
  }

  Result Start(const TransportConfig& config, RegionTable& regions, size_t slot) override {
    (void)slot;
    regions_ = &regions;
    connections_ = config.connections > 0 ? config.connections : DefaultTcpConnections();
    device_id_ = config.device_id < 0 ? 0 : config.device_id;
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
      dialer = [weak](Deadline d, uint64_t, SocketPtr* socket) -> Result {
        auto l = weak.lock();
        if (!l) return Result::LinkFailed("link closed");
        return l->DialJoin("tcp", EncodeTcpJoin(static_cast<uint8_t>(TcpJoin::kForward), 0), d, socket);
      };
    } else {
      // We cannot dial a client (it may not listen): ask it to dial us.
      dialer = [weak](Deadline d, uint64_t dial_id, SocketPtr*) -> Result {
        auto l = weak.lock();
        if (!l) return Result::LinkFailed("link closed");
        std::vector<uint8_t> reply;
        Result r = l->CallPeer("tcp", EncodeTcpJoin(TcpEndpoint::kOpenReverse, dial_id), d, &reply);
        // Busy stays busy: the pool asks again (ConnectionPool::Acquire).
        if (!r.ok() && r.code() != llm_datadist::LLM_TIMEOUT && r.code() != llm_datadist::LLM_LINK_BUSY)
          return Result::LinkFailed(Msg("peer could not open a data connection: ", r.message()));
        return r;
      };
    }
    auto pool = std::make_shared<ConnectionPool>(connections_, std::move(dialer));
    auto endpoint = std::make_shared<TcpEndpoint>(pool, link, *regions_, device_id_);
    if (Gpu().Available(nullptr)) endpoint->EnableDeviceStaging(std::make_unique<DeviceStagedTransfer>(Gpu(), device_id_));
    *out = std::move(endpoint);
    return Result::Ok();
  }

  Result AdmitJoin(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& join_info) override {
    uint8_t kind = 0;
    uint64_t dial_id = 0;
    if (!DecodeTcpJoin(join_info, &kind, &dial_id) ||
        (kind != static_cast<uint8_t>(TcpJoin::kForward) && kind != static_cast<uint8_t>(TcpJoin::kReverse)))
      return Result::ParamInvalid("malformed tcp join");
    return AdmitDataConnection(*link, connections_);
  }

  void AcceptJoin(const std::shared_ptr<LinkHandle>& link, const std::shared_ptr<Endpoint>& endpoint,
                  std::shared_ptr<Socket> socket, const std::vector<uint8_t>& join_info) override {
    auto tcp = std::static_pointer_cast<TcpEndpoint>(endpoint);
    uint8_t kind = 0;
    uint64_t dial_id = 0;
    (void)DecodeTcpJoin(join_info, &kind, &dial_id);  // AdmitJoin checked it
    if (kind == static_cast<uint8_t>(TcpJoin::kReverse)) {
      tcp->OfferConnection(std::move(socket), dial_id);
      return;
    }
    link->TrackSocket(socket);
    std::string why = ServeDataConnection(*socket, *regions_, device_id_);
    LDD_LOG(Debug) << "data connection from cluster " << link->remote_cluster_id() << " ended: " << why;
  }

 private:
  RegionTable* regions_ = nullptr;
  uint32_t connections_ = 4;
  int device_id_ = 0;
};

}  // namespace

std::vector<uint8_t> EncodeTcpJoin(uint8_t kind, uint64_t dial_id) {
  WireWriter w;
  w.U8(kind);
  w.U64(dial_id);
  return std::move(w.buffer());
}

bool DecodeTcpJoin(const std::vector<uint8_t>& bytes, uint8_t* kind, uint64_t* dial_id) {
  // A bare kind byte (no dial id) is accepted too.
  if (bytes.size() == 1) {
    *kind = bytes[0];
    *dial_id = 0;
    return true;
  }
  WireReader r(bytes);
  *kind = r.U8();
  *dial_id = r.U64();
  return r.done();
}

uint32_t DefaultTcpConnections() {
  // One stream moves a few GB/s at most and a core drives about one: use the
  // cores, at least 4 (small machines still gain from overlap) and at most
  // 16 (beyond that, loopback and NICs stop scaling).
  unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<uint32_t>(cores, 4, 16);
}

std::unique_ptr<Transport> MakeTcpTransport() { return std::make_unique<TcpTransport>(); }

}  // namespace lldd
