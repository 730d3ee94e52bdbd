// GPU memory across processes over TCP, staged through pinned slabs on both
// sides (issue 21): the requesting side's DeviceStagedTransfer and the
// serving side's DeviceStager, with the fake GPU in each process. The
// cuda_ipc path is not used: both ends force tcp, as two hosts would.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "gpu/device_memory.h"
#include "gpu/fake_gpu_api.h"
#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;

namespace {

constexpr uint64_t kPeer = 1, kSelf = 2;
// 4 tensors x 64 rows x 64 KiB: 16 MiB, so a transfer spans several 8 MiB slabs.
constexpr uint32_t kTensors = 4;
constexpr uint64_t kRows = 64, kCols = 16384;
constexpr int64_t kSeed = 77;

class GpuStagedTcpTest : public ::testing::Test {
 protected:
  // `peer_rate`: the peer's fake GPU speed in bytes/s (0: instant).
  void Start(uint64_t peer_rate = 0, int64_t wait_ms = 10000) {
    lldd::SetGpuApiForTesting(&gpu_);
    previous_ = lldd::SetDeviceMemoryProvider(nullptr);
    const std::map<std::string, std::string> tcp{{OPTION_TRANSFER_BACKEND, "tcp"}};
    auto peer_options = tcp;
    peer_options[lldd_test::kFakeGpuOption] = std::to_string(peer_rate);
    peer_ = std::make_unique<ForkedServer>(kPeer, peer_options);
    auto mine = tcp;
    mine[OPTION_SYNC_CACHE_WAIT_TIME] = std::to_string(wait_ms);
    self_ = std::make_unique<LlmDataDist>(kSelf, LlmRole::kDecoder);
    ASSERT_EQ(self_->Initialize(ClientOptions(mine)), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
    std::vector<Status> rets;
    ASSERT_EQ(self_->LinkLlmClusters({ClusterAt(kPeer, peer_->port())}, rets, 5000), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    ASSERT_STREQ(self_->GetLinkTransport(kPeer), "tcp");
  }
  void TearDown() override {
    if (peer_) peer_->Kill();  // it may be frozen
    if (self_) self_->Finalize();
    self_.reset();
    peer_.reset();
    lldd::SetDeviceMemoryProvider(previous_);
    lldd::SetGpuApiForTesting(nullptr);
  }
  int64_t PeerCache(bool device, int64_t seed = kSeed) {
    std::string reply = peer_->Command((device ? "allocdev " : "alloc ") + std::to_string(kTensors) + " " +
                                       std::to_string(kRows) + " " + std::to_string(kCols) + " " + std::to_string(seed));
    EXPECT_EQ(reply.find("error"), std::string::npos) << reply;
    return std::stoll(reply);
  }
  Cache MyCache(bool device) {
    Cache c;
    EXPECT_EQ(self_->AllocateCache(Int32Desc(kTensors, kRows, kCols, device ? CachePlacement::kDevice
                                                                             : CachePlacement::kHost),
                                   c),
              LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    EXPECT_EQ(lldd::IsDeviceMemory(reinterpret_cast<void*>(c.tensor_addrs[0])), device);
    return c;
  }
  // Every row of `mine` holds the peer's row `map(row)` of Pattern(seed).
  static void ExpectRows(const Cache& mine, const std::vector<uint64_t>& dst, const std::vector<uint64_t>& src,
                         int64_t seed) {
    for (uint32_t t = 0; t < kTensors; ++t)
      for (size_t i = 0; i < dst.size(); ++i)
        ASSERT_TRUE(lldd_test::RowHolds(mine, t, dst[i], kCols, seed, t, src[i]))
            << "tensor " << t << " row " << dst[i] << " should hold row " << src[i];
  }
  std::string Snapshot(const Cache& c) {
    std::string s;
    for (uint64_t a : c.tensor_addrs) s.append(reinterpret_cast<const char*>(a), kRows * kCols * 4);
    return s;
  }

  lldd::FakeGpuApi gpu_;
  std::shared_ptr<lldd::DeviceMemoryProvider> previous_;
  std::unique_ptr<ForkedServer> peer_;
  std::unique_ptr<LlmDataDist> self_;
};

std::vector<uint64_t> Blocks(uint64_t from, uint64_t n, uint64_t step) {
  std::vector<uint64_t> b;
  for (uint64_t i = 0; i < n; ++i) b.push_back((from + i * step) % kRows);
  return b;
}

// Device to device and device to host, pulled and pushed, every byte checked.
TEST_F(GpuStagedTcpTest, DeviceMemoryCrossesInBothDirectionsThroughSlabs) {
  Start();
  const auto src = Blocks(5, 40, 7), dst = Blocks(0, 40, 1);
  for (bool peer_device : {true, false}) {
    for (bool my_device : {true, false}) {
      if (!peer_device && !my_device) continue;  // plain tcp, tested elsewhere
      SCOPED_TRACE(std::string("peer ") + (peer_device ? "device" : "host") + ", here " + (my_device ? "device" : "host"));
      const int64_t remote = PeerCache(peer_device);
      Cache mine = MyCache(my_device);
      const int launches = gpu_.launches;
      ASSERT_EQ(self_->PullKvBlocks(CacheIndex{kPeer, remote, 0}, mine, src, dst), LLM_SUCCESS)
          << LlmDataDist::GetLastErrorMessage();
      ExpectRows(mine, dst, src, kSeed);
      EXPECT_EQ(gpu_.launches > launches, my_device);  // our side scattered from slabs
      // Push back: our rows (now the peer's pattern at `src`) into fresh peer
      // rows, then the whole peer cache checks out as a refilled pattern.
      lldd_test::FillPattern(mine.tensor_addrs, kRows, kCols, kSeed + 1);
      ASSERT_EQ(self_->PushKvBlocks(mine, CacheIndex{kPeer, remote, 0}, Blocks(0, kRows, 1), Blocks(0, kRows, 1)),
                LLM_SUCCESS)
          << LlmDataDist::GetLastErrorMessage();
      EXPECT_EQ(peer_->Command("check " + std::to_string(remote) + " " + std::to_string(kSeed + 1)), "ok");
      ASSERT_EQ(self_->DeallocateCache(mine.cache_id), LLM_SUCCESS);
    }
  }
}

// A peer frozen mid-transfer: the pull ends with LLM_TIMEOUT at its
// deadline, and no byte lands in our GPU memory afterwards, although the
// peer's bytes arrive once it thaws.
TEST_F(GpuStagedTcpTest, AFrozenPeerTimesOutAndNothingLandsAfterward) {
  Start(/*peer_rate=*/64U << 20, /*wait_ms=*/300);  // the peer's GPU: a slab in ~125 ms
  const int64_t remote = PeerCache(true);
  Cache mine = MyCache(true);
  const auto all = Blocks(0, kRows, 1);
  std::thread freezer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    peer_->Freeze();
  });
  auto start = std::chrono::steady_clock::now();
  Status st = self_->PullKvBlocks(CacheIndex{kPeer, remote, 0}, mine, all, all);
  auto took = std::chrono::steady_clock::now() - start;
  freezer.join();
  EXPECT_EQ(st, LLM_TIMEOUT) << LlmDataDist::GetLastErrorMessage();
  EXPECT_LT(took, std::chrono::seconds(3));
  const std::string at_return = Snapshot(mine);
  peer_->Thaw();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(Snapshot(mine) == at_return) << "bytes landed after the pull returned";
  ASSERT_EQ(self_->DeallocateCache(mine.cache_id), LLM_SUCCESS);
}

// A peer killed mid-transfer: the pull fails within its deadline, and
// our cache can be freed at once (no stuck copy holds it).
TEST_F(GpuStagedTcpTest, AKilledPeerFailsThePullAndLeavesNothingHeld) {
  Start(/*peer_rate=*/64U << 20, /*wait_ms=*/2000);
  const int64_t remote = PeerCache(true);
  Cache mine = MyCache(true);
  const auto all = Blocks(0, kRows, 1);
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    peer_->Kill();
  });
  auto start = std::chrono::steady_clock::now();
  Status st = self_->PullKvBlocks(CacheIndex{kPeer, remote, 0}, mine, all, all);
  auto took = std::chrono::steady_clock::now() - start;
  killer.join();
  EXPECT_NE(st, LLM_SUCCESS);
  EXPECT_LT(took, std::chrono::seconds(4));
  EXPECT_EQ(self_->DeallocateCache(mine.cache_id), LLM_SUCCESS);
  // And a push into the dead peer fails too, without touching our memory.
  Cache again = MyCache(true);
  lldd_test::FillPattern(again.tensor_addrs, kRows, kCols, 3);
  EXPECT_NE(self_->PushKvBlocks(again, CacheIndex{kPeer, remote, 0}, all, all), LLM_SUCCESS);
  ExpectRows(again, all, all, 3);
}

}  // namespace
