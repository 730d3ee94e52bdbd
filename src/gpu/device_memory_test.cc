#include "gpu/device_memory.h"

#include <gtest/gtest.h>

#include "gpu/fake_gpu_api.h"

namespace lldd {
namespace {

TEST(DeviceMemory, AllocatesShareableGpuMemoryThroughTheProvider) {
  FakeGpuApi api;
  auto provider = MakeGpuMemoryProvider(api);
  std::shared_ptr<Allocation> a;
  ASSERT_TRUE(provider->Allocate(100000, 0, &a).ok());
  EXPECT_EQ(a->kind(), kDeviceMemory);
  EXPECT_GE(a->size(), 100000U);
  EXPECT_GE(a->shareable_fd(), 0);
  EXPECT_TRUE(provider->IsDeviceMemory(a->data() + 5));
  int host = 0;
  EXPECT_FALSE(provider->IsDeviceMemory(&host));
  EXPECT_EQ(provider->Allocate(100, 3, &a).code(), llm_datadist::LLM_PARAM_INVALID);
}

TEST(DeviceMemory, WithoutAGpuNothingIsInstalled) {
  FakeGpuApi none(0);
  SetGpuApiForTesting(&none);
  auto before = SetDeviceMemoryProvider(nullptr);
  EXPECT_FALSE(InstallGpuMemoryProvider());
  EXPECT_EQ(GetDeviceMemoryProvider(), nullptr);
  std::shared_ptr<Allocation> a;
  EXPECT_EQ(AllocateDeviceCacheMemory(4096, 0, &a).code(), llm_datadist::LLM_FEATURE_NOT_ENABLED);
  SetGpuApiForTesting(nullptr);
  SetDeviceMemoryProvider(before);
}

}  // namespace
}  // namespace lldd
