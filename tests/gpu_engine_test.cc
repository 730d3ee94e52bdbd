// Device caches through the public API, on the fake GPU (issue 11): two
// instances in one process, so that both see the same fake. kDevice caches
// are "GPU memory" of the fake; the link pulls them over cuda_ipc.
#include <gtest/gtest.h>

#include "gpu/device_memory.h"
#include "gpu/fake_gpu_api.h"
#include "llm_datadist/llm_datadist.h"
#include "memory/allocator.h"
#include "test_peer.h"

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
