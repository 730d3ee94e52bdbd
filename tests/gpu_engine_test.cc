// Device caches through the public API, on the fake GPU (issue 11): two
// instances in one process, so that both see the same fake. kDevice caches
// are "GPU memory" of the fake; the link pulls them over cuda_ipc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "adxl/adxl_engine.h"
#include "gpu/device_memory.h"
#include "gpu/fake_gpu_api.h"
#include "hixl/hixl.h"
#include "llm_datadist/llm_datadist.h"
#include "memory/allocator.h"
#include "test_peer.h"
#include "tests/adxl_pair.h"

using namespace llm_datadist;

namespace {

class GpuEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lldd::SetGpuApiForTesting(&api);
    previous = lldd::SetDeviceMemoryProvider(nullptr);
  }
  void TearDown() override {
    lldd::SetDeviceMemoryProvider(previous);
    lldd::SetGpuApiForTesting(nullptr);
  }
  lldd::FakeGpuApi api;
  std::shared_ptr<lldd::DeviceMemoryProvider> previous;
};

TEST_F(GpuEngineTest, DeviceCachesArePulledOverCudaIpcWithOneLaunchPerCall) {
  LlmDataDist server(2, LlmRole::kPrompt);
  ASSERT_EQ(server.Initialize(lldd_test::ClientOptions({{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}})), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  Cache remote;
  ASSERT_EQ(server.AllocateCache(lldd_test::Int32Desc(2, 8, 16, CachePlacement::kDevice), remote), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_TRUE(lldd::IsDeviceMemory(reinterpret_cast<void*>(remote.tensor_addrs[0])));
  lldd_test::FillPattern(remote.tensor_addrs, 8, 16, 5);

  LlmDataDist client(3, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(lldd_test::ClientOptions({})), LLM_SUCCESS);
  std::vector<Status> rets;
  ASSERT_EQ(client.LinkLlmClusters({lldd_test::ClusterAt(2, server.GetListenPort())}, rets), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  Cache local;
  ASSERT_EQ(client.AllocateCache(lldd_test::Int32Desc(2, 8, 16, CachePlacement::kDevice), local), LLM_SUCCESS);

  int launches = api.launches;
  ASSERT_EQ(client.PullKvBlocks(CacheIndex{2, remote.cache_id}, local, {7, 1, 2}, {0, 3, 4}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_EQ(api.launches - launches, 1);
  EXPECT_EQ(api.vmm_imports.load(), 1);
  EXPECT_TRUE(lldd_test::RowHolds(local, 1, 0, 16, 5, 1, 7));
  EXPECT_TRUE(lldd_test::RowHolds(local, 0, 3, 16, 5, 0, 1));
  EXPECT_TRUE(lldd_test::RowHolds(local, 1, 4, 16, 5, 1, 2));

  // A host cache here, the GPU cache there: the kernel reads into our
  // (registered) host memory.
  Cache host;
  ASSERT_EQ(client.AllocateCache(lldd_test::Int32Desc(2, 8, 16), host), LLM_SUCCESS);
  ASSERT_EQ(client.PullKvBlocks(CacheIndex{2, remote.cache_id}, host, {6}, {2}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(lldd_test::RowHolds(host, 0, 2, 16, 5, 0, 6));
  EXPECT_EQ(api.vmm_imports.load(), 1);  // still the one import

  // Freeing the remote cache revokes it here before it returns.
  int unmaps = api.vmm_unmaps;
  ASSERT_EQ(server.DeallocateCache(remote.cache_id), LLM_SUCCESS);
  EXPECT_GE(api.vmm_unmaps - unmaps, 2);  // our import and the owner's allocation
  EXPECT_NE(client.PullKvBlocks(CacheIndex{2, remote.cache_id}, local, {1}, {1}), LLM_SUCCESS);
  ASSERT_EQ(client.DeallocateCache(local.cache_id), LLM_SUCCESS);
  ASSERT_EQ(client.DeallocateCache(host.cache_id), LLM_SUCCESS);
  client.Finalize();
  server.Finalize();
}

// HIXL over GPU memory (issue 17): MEM_DEVICE registrations of the
// application's own cudaMalloc memory are GPU regions; two engines in one
// process move them over cuda_ipc (one kernel launch per call), in both
// directions and into host memory, every byte checked.
TEST_F(GpuEngineTest, HixlMovesDeviceMemoryOverCudaIpc) {
  constexpr size_t kLen = 256 * 1024;
  auto* server_mem = static_cast<uint8_t*>(api.Malloc(kLen));
  auto* client_mem = static_cast<uint8_t*>(api.Malloc(kLen));
  std::vector<uint8_t> host(kLen, 0);
  for (size_t i = 0; i < kLen; ++i) server_mem[i] = static_cast<uint8_t>(i * 13 + 7);
  std::memset(client_mem, 0, kLen);
  hixl::Hixl server;
  const std::string name = lldd_test::ListenOnSomePort(server);
  ASSERT_FALSE(name.empty());
  hixl::MemHandle sh = nullptr;
  ASSERT_EQ(server.RegisterMem({reinterpret_cast<uintptr_t>(server_mem), kLen}, hixl::MEM_DEVICE, sh), hixl::SUCCESS);
  hixl::Hixl client;
  ASSERT_EQ(client.Initialize("127.0.0.1", {}), hixl::SUCCESS);
  hixl::MemHandle ch = nullptr, hh = nullptr;
  ASSERT_EQ(client.RegisterMem({reinterpret_cast<uintptr_t>(client_mem), kLen}, hixl::MEM_DEVICE, ch), hixl::SUCCESS);
  ASSERT_EQ(client.RegisterMem({reinterpret_cast<uintptr_t>(host.data()), kLen}, hixl::MEM_HOST, hh), hixl::SUCCESS);
  ASSERT_EQ(client.Connect(name.c_str(), 5000), hixl::SUCCESS);
  const uintptr_t remote = reinterpret_cast<uintptr_t>(server_mem);
  const int launches = api.launches;
  // GPU to GPU: two ranges in one call.
  ASSERT_EQ(client.TransferSync(name.c_str(), hixl::READ,
                                {{reinterpret_cast<uintptr_t>(client_mem), remote + 4096, 8192},
                                 {reinterpret_cast<uintptr_t>(client_mem) + 65536, remote, 100}},
                                5000),
            hixl::SUCCESS);
  EXPECT_EQ(api.launches - launches, 1) << "one kernel launch per call";
  for (size_t i = 0; i < 8192; ++i) ASSERT_EQ(client_mem[i], server_mem[4096 + i]) << i;
  for (size_t i = 0; i < 100; ++i) ASSERT_EQ(client_mem[65536 + i], server_mem[i]) << i;
  EXPECT_EQ(client_mem[8192], 0);
  // The peer's GPU memory into our host memory, then ours back to the peer's GPU.
  ASSERT_EQ(client.TransferSync(name.c_str(), hixl::READ, {{reinterpret_cast<uintptr_t>(host.data()), remote, kLen}}, 5000),
            hixl::SUCCESS);
  EXPECT_EQ(std::memcmp(host.data(), server_mem, kLen), 0);
  for (size_t i = 0; i < 4096; ++i) host[i] = static_cast<uint8_t>(i * 3 + 1);
  ASSERT_EQ(client.TransferSync(name.c_str(), hixl::WRITE,
                                {{reinterpret_cast<uintptr_t>(host.data()), remote + 200000, 4096}}, 5000),
            hixl::SUCCESS);
  EXPECT_EQ(std::memcmp(server_mem + 200000, host.data(), 4096), 0);
  // Outside the peer's registration: refused, nothing written.
  EXPECT_EQ(client.TransferSync(name.c_str(), hixl::WRITE,
                                {{reinterpret_cast<uintptr_t>(host.data()), remote + kLen - 16, 32}}, 5000),
            hixl::PARAM_INVALID);
  EXPECT_EQ(client.Disconnect(name.c_str(), 5000), hixl::SUCCESS);
  EXPECT_EQ(client.DeregisterMem(ch), hixl::SUCCESS);
  EXPECT_EQ(client.DeregisterMem(hh), hixl::SUCCESS);
  client.Finalize();
  EXPECT_EQ(server.DeregisterMem(sh), hixl::SUCCESS);
  server.Finalize();
  api.Free(client_mem);
  api.Free(server_mem);
}

// adxl's MallocMem(MEM_DEVICE): GPU memory from the library's VMM
// allocator, so that once registered a peer imports its VMM handle (not a
// legacy IPC handle) and reads it with the copy kernel.
TEST_F(GpuEngineTest, MallocMemDeviceMemoryIsSharedByItsVmmHandle) {
  constexpr size_t kLen = 64 * 1024;
  void* p = nullptr;
  ASSERT_EQ(adxl::AdxlEngine::MallocMem(adxl::MEM_DEVICE, kLen, &p), adxl::SUCCESS);
  ASSERT_TRUE(lldd::IsDeviceMemory(p));
  auto* mem = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < kLen; ++i) mem[i] = static_cast<uint8_t>(i * 11 + 3);
  adxl::ShareableHandle h{};
  ASSERT_EQ(adxl::AdxlEngine::ExportToShareableHandle(p, h), adxl::SUCCESS);
  EXPECT_EQ(h.mem_type, adxl::MEM_DEVICE);
  EXPECT_GE(h.fd, 0);

  lldd_test::AdxlPair pair;
  ASSERT_EQ(pair.Open(p, kLen, adxl::MEM_DEVICE, 5000), "");
  const int imports = api.vmm_imports;
  const int opens = api.ipc_opens;
  ASSERT_EQ(pair.ReadAll(p, 5000), adxl::SUCCESS);
  EXPECT_EQ(std::memcmp(pair.host.data(), mem, kLen), 0);
  EXPECT_EQ(api.vmm_imports - imports, 1);
  EXPECT_EQ(api.ipc_opens - opens, 0);
  EXPECT_EQ(adxl::AdxlEngine::FreeMem(p), adxl::SUCCESS);
}

TEST_F(GpuEngineTest, WithoutAGpuDeviceCachesAreHostMemory) {
  lldd::FakeGpuApi none(0);
  lldd::SetGpuApiForTesting(&none);
  LlmDataDist dd(4, LlmRole::kDecoder);
  ASSERT_EQ(dd.Initialize(lldd_test::ClientOptions({})), LLM_SUCCESS);
  Cache c;
  ASSERT_EQ(dd.AllocateCache(lldd_test::Int32Desc(1, 4, 16, CachePlacement::kDevice), c), LLM_SUCCESS);
  lldd_test::FillPattern(c.tensor_addrs, 4, 16, 1);  // plain host memory
  EXPECT_FALSE(lldd::IsDeviceMemory(reinterpret_cast<void*>(c.tensor_addrs[0])));
  EXPECT_EQ(dd.DeallocateCache(c.cache_id), LLM_SUCCESS);
  dd.Finalize();
}

}  // namespace
