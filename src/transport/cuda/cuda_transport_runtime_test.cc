// The cuda_ipc transport on the real GPU layer over the fake CUDA runtime
// (gpu/cuda/fake_cuda_runtime.h, part of cuda_runtime_tests): two
// instances in one process, so their IPC handles are the process's own
// (which CUDA refuses to open), and memory on a second GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "common/wire.h"
#include "gpu/cuda/cuda_gpu_api.h"
#include "gpu/cuda/fake_cuda_runtime.h"
#include "transport/cuda/cuda_endpoint.h"
#include "transport/cuda/cuda_transport.h"

namespace lldd {
namespace {

class Link final : public LinkHandle {
 public:
  std::weak_ptr<Endpoint> peer;
  std::function<void(const std::vector<uint8_t>&)> watch;  // sees each reply
  uint64_t remote_cluster_id() const override { return 1; }
  bool initiator() const override { return true; }
  uint64_t link_id() const override { return 7; }
  uint64_t link_secret() const override { return 77; }
  Result CallPeer(const std::string&, const std::vector<uint8_t>& request, Deadline,
                  std::vector<uint8_t>* reply) override {
    auto p = peer.lock();
    if (p == nullptr) return Result::LinkFailed("peer gone");
    Result r = p->OnPeerCall(request, reply);
    if (r.ok() && watch) watch(*reply);
    return r;
  }
  Result DialJoin(const std::string&, const std::vector<uint8_t>&, Deadline, std::shared_ptr<Socket>*) override {
    return Result::LinkFailed("no joins here");
  }
  void TrackSocket(const std::shared_ptr<Socket>&) override {}
  size_t TrackedSockets() const override { return 0; }
  void Spawn(std::function<void()> fn) override { std::thread(std::move(fn)).detach(); }
  bool closed() const override { return false; }
};

struct Side {
  explicit Side(GpuApi& api) : transport(&api) {
    regions.SetHooks([this](Region& r) { return transport.OnRegionAdded(r); },
                     [this](Region& r) { transport.OnRegionRemoved(r); });
  }
  RegionTable regions;
  CudaTransport transport;
  std::shared_ptr<Link> link = std::make_shared<Link>();
  std::shared_ptr<Endpoint> endpoint;
};

class CudaTransportRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_cuda::Configure(fake_cuda::Config{});
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    api = NewCudaGpuApi();
    owner = std::make_unique<Side>(*api);
    puller = std::make_unique<Side>(*api);
    TransportConfig config;
    config.device_id = 0;
    ASSERT_TRUE(owner->transport.Start(config, owner->regions, 0).ok());
    ASSERT_TRUE(puller->transport.Start(config, puller->regions, 0).ok());
    std::vector<uint8_t> owner_info, puller_info;
    ASSERT_TRUE(owner->transport.LocalInfo(&owner_info).ok());
    ASSERT_TRUE(puller->transport.LocalInfo(&puller_info).ok());
    ASSERT_TRUE(owner->transport.Connect(owner->link, puller_info, nullptr, Deadline::AfterMillis(1000),
                                         &owner->endpoint).ok());
    ASSERT_TRUE(puller->transport.Connect(puller->link, owner_info, nullptr, Deadline::AfterMillis(1000),
                                          &puller->endpoint).ok());
    owner->link->peer = puller->endpoint;
    puller->link->peer = owner->endpoint;
  }
  void TearDown() override {
    if (puller != nullptr && puller->endpoint != nullptr) puller->endpoint->Close();
    if (owner != nullptr && owner->endpoint != nullptr) owner->endpoint->Close();
    puller.reset();
    owner.reset();
    EXPECT_EQ(fake_cuda::StickyError(), cudaSuccess) << "a kernel touched what it may not";
  }
  static uint8_t* Malloc(uint64_t bytes, int device) {
    EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
    EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
    return static_cast<uint8_t*>(p);
  }
  std::unique_ptr<GpuApi> api;
  std::unique_ptr<Side> owner, puller;
};

// Both ends in one process: the owner's IPC handle is opened as its own
// pointer; the puller's memory lies on GPU 1 while it copies with GPU 0,
// through peer access (registered or not).
TEST_F(CudaTransportRuntimeTest, PullsIntoMemoryOfAnotherGpuInOneProcess) {
  constexpr uint64_t kBytes = 256 << 10;
  uint8_t* remote = Malloc(1 << 20, 0);
  for (uint64_t i = 0; i < kBytes; ++i) remote[65536 + i] = static_cast<uint8_t>(i * 7 + 1);
  uint64_t id = owner->regions.Add(remote, 1 << 20, kDeviceMemory);  // the whole cudaMalloc block
  ASSERT_NE(id, 0U);
  uint8_t* registered = Malloc(kBytes, 1);
  uint8_t* unregistered = Malloc(kBytes, 1);
  ASSERT_NE(puller->regions.Add(registered, kBytes, kDeviceMemory), 0U);
  for (uint8_t* local : {registered, unregistered}) {
    std::memset(local, 0, kBytes);
    Result r = puller->endpoint->Read({{local, id, 65536, kBytes}}, Deadline::AfterMillis(5000));
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(std::memcmp(local, remote + 65536, kBytes), 0);
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  owner->regions.Remove({id}, [&] { ASSERT_TRUE(owner->endpoint->Revoke({id}, Deadline::AfterMillis(5000)).ok()); });
  EXPECT_EQ(cudaFree(remote), cudaSuccess);
  (void)cudaFree(registered);
  (void)cudaFree(unregistered);
}

}  // namespace
}  // namespace lldd
