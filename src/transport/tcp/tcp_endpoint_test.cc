#include "transport/tcp/tcp_endpoint.h"

#include <gtest/gtest.h>

#include <atomic>

#include "transport/tcp/data_server.h"
#include "transport/tcp/device_staging.h"
#include "transport/tcp/tcp_transport.h"

namespace lldd {
namespace {

// The connecting side of a link, as the TCP endpoint sees it: it reports
// how many data connections the link serves, and counts dials.
class CountingLink final : public LinkHandle {
 public:
  size_t tracked = 0;
  std::atomic<int> dials{0};
  uint64_t remote_cluster_id() const override { return 1; }
  bool initiator() const override { return true; }
  uint64_t link_id() const override { return 2; }
  uint64_t link_secret() const override { return 3; }
  Result CallPeer(const std::string&, const std::vector<uint8_t>&, Deadline, std::vector<uint8_t>*) override {
    return Result::LinkFailed("no peer");
  }
  Result DialJoin(const std::string&, const std::vector<uint8_t>&, Deadline, std::shared_ptr<Socket>*) override {
    ++dials;
    return Result::LinkFailed("no listener here");
  }
  void TrackSocket(const std::shared_ptr<Socket>&) override {}
  size_t TrackedSockets() const override { return tracked; }
  void Spawn(std::function<void()>) override {}
  bool closed() const override { return false; }
};

// A peer's request to dial it back (and serve what it sends on a thread of
// ours) is refused once the link serves as many data connections as its
// pool can use, twice over plus slack, like connections the peer opens.
// A peer names how long its request may run; we hold the regions it uses
// that long at most 61 s, whatever it asks (the u32 allows 49 days).
TEST(DataServerTest, APeersRequestDeadlineIsCapped) {
  EXPECT_EQ(ServeTimeoutMs(0), 100 + 1000);
  EXPECT_EQ(ServeTimeoutMs(2500), 2500 + 1000);
  EXPECT_EQ(ServeTimeoutMs(kMaxPeerRequestMs), kMaxPeerRequestMs + 1000);
  EXPECT_EQ(ServeTimeoutMs(kMaxPeerRequestMs + 1), kMaxPeerRequestMs + 1000);
  EXPECT_EQ(ServeTimeoutMs(UINT32_MAX), kMaxPeerRequestMs + 1000);
}

TEST(TcpEndpointTest, ReverseDialsAreBoundedPerLink) {
  constexpr size_t kConnections = 4;
  RegionTable regions;
  auto link = std::make_shared<CountingLink>();
  auto pool = std::make_shared<ConnectionPool>(
      kConnections, ConnectionPool::SimpleDialer([](Deadline, SocketPtr*) { return Result::LinkFailed("unused"); }));
  TcpEndpoint endpoint(pool, link, regions, 0);
  const std::vector<uint8_t> request = EncodeTcpJoin(TcpEndpoint::kOpenReverse, 9);
  std::vector<uint8_t> reply;

  link->tracked = 2 * kConnections + 8;  // at the limit: still dials
  EXPECT_EQ(endpoint.OnPeerCall(request, &reply).code(), llm_datadist::LLM_LINK_FAILED);
  EXPECT_EQ(link->dials.load(), 1);

  link->tracked = 2 * kConnections + 9;  // past it: refused without dialing
  Result r = endpoint.OnPeerCall(request, &reply);
  EXPECT_EQ(r.code(), llm_datadist::LLM_LINK_BUSY) << r.message();
  EXPECT_EQ(link->dials.load(), 1);
}

}  // namespace
}  // namespace lldd
