// Tests on a real GPU (ctest label `gpu`); each skips cleanly where there is
// no GPU or no driver. scripts/gpu-check.sh runs them on a GPU machine.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>

#include "gpu/gpu_api.h"
#include "gpu/gpu_copier.h"

namespace lldd {
namespace {

class GpuDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!SystemGpuApi().Available(&why)) GTEST_SKIP() << "no usable GPU here: " << why;
    api = &SystemGpuApi();
    ASSERT_TRUE(api->SetDevice(0).ok());
    ASSERT_TRUE(api->StreamCreate(&stream).ok());
    ASSERT_TRUE(api->EventCreate(&event).ok());
  }
  void TearDown() override {
    if (api == nullptr) return;
    api->EventDestroy(event);
    api->StreamDestroy(stream);
  }
  Result Sync() {
    LDD_RETURN_IF_ERROR(api->EventRecord(event, stream));
    return WaitGpuEvent(*api, event, Deadline::AfterMillis(10000));
  }
  // Host -> GPU and back through pinned memory.
  Result Upload(void* dst, const std::vector<uint8_t>& src) {
    void* pinned = nullptr;
    LDD_RETURN_IF_ERROR(api->HostAllocPinned(src.size(), &pinned));
    std::memcpy(pinned, src.data(), src.size());
    Result r = api->MemcpyAsync(dst, pinned, src.size(), stream);
    if (r.ok()) r = Sync();
    api->HostFreePinned(pinned);
    return r;
  }
  Result Download(std::vector<uint8_t>* dst, const void* src, uint64_t n) {
    void* pinned = nullptr;
    LDD_RETURN_IF_ERROR(api->HostAllocPinned(n, &pinned));
    Result r = api->MemcpyAsync(pinned, src, n, stream);
    if (r.ok()) r = Sync();
    dst->assign(static_cast<uint8_t*>(pinned), static_cast<uint8_t*>(pinned) + n);
    api->HostFreePinned(pinned);
    return r;
  }

  GpuApi* api = nullptr;
  GpuStream stream = nullptr;
  GpuEvent event = nullptr;
};

std::vector<uint8_t> Pattern(uint64_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST_F(GpuDeviceTest, GatherKernelCopiesScatteredAndMisalignedBlocksExactly) {
  constexpr uint64_t kPool = 32U << 20;
  void* src = nullptr;
  void* dst = nullptr;
  ASSERT_TRUE(api->DeviceAlloc(kPool, &src).ok());
  ASSERT_TRUE(api->DeviceAlloc(kPool, &dst).ok());
  std::vector<uint8_t> src_bytes = Pattern(kPool, 1), dst_bytes(kPool, 0);
  ASSERT_TRUE(Upload(src, src_bytes).ok());
  ASSERT_TRUE(Upload(dst, dst_bytes).ok());
  // 2048 aligned 8 KiB blocks in random order, then odd sizes and offsets,
  // then one run long enough to be cut into pieces.
  std::vector<GpuCopy> copies;
  std::vector<uint64_t> order(2048);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(5));
  auto* s = static_cast<uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (uint64_t i = 0; i < 2048; ++i) copies.push_back({d + i * 8192, s + order[i] * 8192, 8192});
  std::mt19937 rng(9);
  for (int i = 0; i < 300; ++i) {
    uint64_t len = 1 + rng() % 5000, off = (16U << 20) + i * 6000 + rng() % 7;
    copies.push_back({d + off + rng() % 5, s + rng() % (8U << 20), len});
  }
  copies.push_back({d + (24U << 20) + 3, s + 1, 3U << 20});
  GpuCopier copier(*api, 0);
  Result r = copier.Run(copies, Deadline::AfterMillis(10000));
  ASSERT_TRUE(r.ok()) << r.message();
  for (const GpuCopy& c : copies)
    std::memcpy(dst_bytes.data() + (c.dst - d), src_bytes.data() + (c.src - s), c.length);
  std::vector<uint8_t> got;
  ASSERT_TRUE(Download(&got, dst, kPool).ok());
  EXPECT_TRUE(got == dst_bytes);
  api->DeviceFree(src);
  api->DeviceFree(dst);
}

TEST_F(GpuDeviceTest, VmmMemoryExportsAnFdThatMapsTheSameBytesElsewhere) {
  GpuVmmBuffer a;
  Result r = api->VmmAllocate(0, 3U << 20, &a);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_GE(a.fd, 0);
  GpuPointerInfo info;
  ASSERT_TRUE(api->PointerInfo(static_cast<uint8_t*>(a.ptr) + 100, &info).ok());
  EXPECT_TRUE(info.device);
  GpuVmmBuffer b;
  r = api->VmmImport(a.fd, a.size, 0, &b);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_NE(a.ptr, b.ptr);
  std::vector<uint8_t> bytes = Pattern(a.size, 2), got;
  ASSERT_TRUE(Upload(a.ptr, bytes).ok());
  ASSERT_TRUE(Download(&got, b.ptr, b.size).ok());
  EXPECT_TRUE(got == bytes);
  api->VmmUnmap(&b);
  api->VmmFree(&a);
}

TEST_F(GpuDeviceTest, KernelReachesRegisteredHostMemoryOfAMemfd) {
  constexpr uint64_t kBytes = 4U << 20;
  int fd = memfd_create("gpu-test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, kBytes), 0);
  auto* host = static_cast<uint8_t*>(mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(host, MAP_FAILED);
  std::vector<uint8_t> bytes = Pattern(kBytes, 3);
  std::memcpy(host, bytes.data(), kBytes);
  Result r = api->HostRegister(host, kBytes);
  ASSERT_TRUE(r.ok()) << r.message();
  void* dev = nullptr;
  ASSERT_TRUE(api->DeviceAlloc(kBytes, &dev).ok());
  GpuCopier copier(*api, 0);
  // Host -> GPU in blocks, then GPU -> host into the second half, reversed.
  std::vector<GpuCopy> in, out;
  for (uint64_t i = 0; i < 64; ++i) in.push_back({static_cast<uint8_t*>(dev) + i * 32768, host + i * 32768, 32768});
  ASSERT_TRUE(copier.Run(in, Deadline::AfterMillis(10000)).ok());
  for (uint64_t i = 0; i < 64; ++i)
    out.push_back({host + (2U << 20) + (63 - i) * 32768, static_cast<uint8_t*>(dev) + i * 32768, 32768});
  ASSERT_TRUE(copier.Run(out, Deadline::AfterMillis(10000)).ok());
  for (uint64_t i = 0; i < 64; ++i)
    ASSERT_EQ(std::memcmp(host + (2U << 20) + (63 - i) * 32768, bytes.data() + i * 32768, 32768), 0) << i;
  EXPECT_TRUE(api->HostUnregister(host).ok());
  api->DeviceFree(dev);
  munmap(host, kBytes);
  ::close(fd);
}

TEST_F(GpuDeviceTest, PointerInfoTellsGpuFromHostMemory) {
  void* dev = nullptr;
  ASSERT_TRUE(api->DeviceAlloc(1 << 20, &dev).ok());
  GpuPointerInfo info;
  ASSERT_TRUE(api->PointerInfo(static_cast<uint8_t*>(dev) + 4096, &info).ok());
  EXPECT_TRUE(info.device);
  EXPECT_EQ(info.base, reinterpret_cast<uint64_t>(dev));
  EXPECT_GE(info.size, 1U << 20);
  int on_stack = 0;
  ASSERT_TRUE(api->PointerInfo(&on_stack, &info).ok());
  EXPECT_FALSE(info.device);
  api->DeviceFree(dev);
}

TEST(GpuAbsent, TheLibraryLoadsAndSaysWhyThereIsNoGpu) {
  std::string why;
  bool available = SystemGpuApi().Available(&why);
  if (available) GTEST_SKIP() << "a GPU is present";
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(SystemGpuApi().DeviceCount(), 0);
  GpuPointerInfo info;
  int x = 0;
  EXPECT_TRUE(SystemGpuApi().PointerInfo(&x, &info).ok());
  EXPECT_FALSE(info.device);
}

}  // namespace
}  // namespace lldd
