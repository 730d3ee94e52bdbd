// Tests on a real GPU (ctest label `gpu`); each skips cleanly where there is
// no GPU or no driver. scripts/gpu-check.sh runs them on a GPU machine.
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>

#include "adxl/adxl_engine.h"
#include "llm_datadist/llm_datadist.h"
#include "tests/adxl_pair.h"
#include "transport/tcp/device_staging.h"
#include "gpu/fake_gpu_api.h"
#include "gpu/gpu_api.h"
#include "gpu/gpu_copier.h"
#include "transport/cuda/cuda_ipc_pair.h"

extern char** environ;

namespace lldd {

// LLDD_GPU_TESTS_ON_FAKE=1 runs these tests on the fake GPU (to check the
// tests themselves on a machine without one).
GpuApi& TestedGpu() {
  static FakeGpuApi* fake = std::getenv("LLDD_GPU_TESTS_ON_FAKE") != nullptr ? new FakeGpuApi() : nullptr;
  return fake != nullptr ? static_cast<GpuApi&>(*fake) : SystemGpuApi();
}

namespace {

class GpuDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!TestedGpu().Available(&why)) GTEST_SKIP() << "no usable GPU here: " << why;
    api = &TestedGpu();
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

TEST_F(GpuDeviceTest, StagerMovesGpuBytesThroughPinnedSlabsBothWays) {
  constexpr uint64_t kBytes = 24U << 20;
  void* src = nullptr;
  void* dst = nullptr;
  ASSERT_TRUE(api->DeviceAlloc(kBytes, &src).ok());
  ASSERT_TRUE(api->DeviceAlloc(kBytes, &dst).ok());
  std::vector<uint8_t> bytes = Pattern(kBytes, 4), got;
  ASSERT_TRUE(Upload(src, bytes).ok());
  std::vector<StagedRange> out, in;
  for (uint64_t i = 0; i < kBytes / 65536; ++i) {
    out.push_back({static_cast<uint8_t*>(src) + i * 65536, 65536, true});
    in.push_back({static_cast<uint8_t*>(dst) + (kBytes / 65536 - 1 - i) * 65536, 65536, true});
  }
  std::vector<uint8_t> wire;
  DeviceStager producer(*api, 0, StagingConfig{4U << 20, 3}), consumer(*api, 0, StagingConfig{4U << 20, 3});
  ASSERT_TRUE(producer
                  .Produce(out,
                           [&](const std::vector<iovec>& v) {
                             for (const iovec& x : v)
                               wire.insert(wire.end(), static_cast<uint8_t*>(x.iov_base),
                                           static_cast<uint8_t*>(x.iov_base) + x.iov_len);
                             return Result::Ok();
                           },
                           Deadline::AfterMillis(10000))
                  .ok());
  ASSERT_TRUE(wire == bytes);
  size_t at = 0;
  ASSERT_TRUE(consumer
                  .Consume(in,
                           [&](const std::vector<iovec>& v) {
                             for (const iovec& x : v) {
                               std::memcpy(x.iov_base, wire.data() + at, x.iov_len);
                               at += x.iov_len;
                             }
                             return Result::Ok();
                           },
                           Deadline::AfterMillis(10000))
                  .ok());
  ASSERT_TRUE(Download(&got, dst, kBytes).ok());
  for (uint64_t i = 0; i < kBytes / 65536; ++i)
    ASSERT_EQ(std::memcmp(got.data() + (kBytes / 65536 - 1 - i) * 65536, bytes.data() + i * 65536, 65536), 0) << i;
  api->DeviceFree(src);
  api->DeviceFree(dst);
}

// The owner is a fresh process (this binary, --owner): CUDA never crosses a fork.
TEST_F(GpuDeviceTest, CudaIpcPullsAndPushesAnotherProcesssGpuCache) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], 100);
  char* argv[] = {const_cast<char*>("/proc/self/exe"), const_cast<char*>("--owner"), const_cast<char*>("100"),
                  nullptr};
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, "/proc/self/exe", &actions, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sv[1]);
  {
    CudaIpcPuller puller(*api);
    Result r = puller.Open(sv[0]);
    ASSERT_TRUE(r.ok()) << r.message();
    const uint64_t bytes = puller.region_bytes();
    void* local = nullptr;
    ASSERT_TRUE(api->DeviceAlloc(bytes, &local).ok());
    std::vector<IoOp> ops;
    std::mt19937 rng(21);
    for (uint64_t i = 0; i < bytes / 32768; ++i)
      ops.push_back({static_cast<uint8_t*>(local) + i * 32768, puller.remote_regions()[i % 2],
                     (rng() % (bytes / 32768)) * 32768, 32768});
    r = puller.endpoint().Read(ops, Deadline::AfterMillis(30000));
    ASSERT_TRUE(r.ok()) << r.message();
    std::vector<uint8_t> got;
    ASSERT_TRUE(Download(&got, local, bytes).ok());
    for (const IoOp& op : ops) {
      uint64_t region = op.region_id == puller.remote_regions()[0] ? 0 : 1;
      const uint8_t* p = got.data() + (op.local - static_cast<uint8_t*>(local));
      for (uint64_t b = 0; b < op.length; ++b) ASSERT_EQ(p[b], PairPattern(region, op.remote_offset + b)) << b;
    }
    // Push a block into the peer, pull it back elsewhere.
    std::vector<uint8_t> mark(32768, 0x3C);
    ASSERT_TRUE(Upload(local, mark).ok());
    ASSERT_TRUE(puller.endpoint().Write({{static_cast<uint8_t*>(local), puller.remote_regions()[1], 65536, 32768}},
                                        Deadline::AfterMillis(30000)).ok());
    ASSERT_TRUE(puller.endpoint().Read({{static_cast<uint8_t*>(local) + 32768, puller.remote_regions()[1], 65536, 32768}},
                                       Deadline::AfterMillis(30000)).ok());
    ASSERT_TRUE(Download(&got, static_cast<uint8_t*>(local) + 32768, 32768).ok());
    EXPECT_TRUE(got == mark);
    api->DeviceFree(local);
  }
  ::close(sv[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// adxl's MallocMem(MEM_DEVICE) on this GPU: VMM memory of the current
// device, whose exported descriptor maps the same bytes, and which one
// engine registers and another reads into host memory (cuda_ipc imports
// the VMM handle).
TEST_F(GpuDeviceTest, AdxlMallocMemIsSharedGpuMemory) {
  SetGpuApiForTesting(api);  // the library's GPU layer: this one (the fake under LLDD_GPU_TESTS_ON_FAKE)
  constexpr uint64_t kLen = 4U << 20;
  void* p = nullptr;
  ASSERT_EQ(adxl::AdxlEngine::MallocMem(adxl::MEM_DEVICE, kLen, &p), adxl::SUCCESS)
      << llm_datadist::LlmDataDist::GetLastErrorMessage();
  GpuPointerInfo info;
  ASSERT_TRUE(api->PointerInfo(p, &info).ok());
  EXPECT_TRUE(info.device);
  const std::vector<uint8_t> bytes = Pattern(kLen, 3);
  ASSERT_TRUE(Upload(p, bytes).ok());
  adxl::ShareableHandle h{};
  ASSERT_EQ(adxl::AdxlEngine::ExportToShareableHandle(p, h), adxl::SUCCESS);
  EXPECT_EQ(h.mem_type, adxl::MEM_DEVICE);
  ASSERT_GE(h.size, kLen);
  GpuVmmBuffer imported;
  Result r = api->VmmImport(h.fd, h.size, 0, &imported);
  ASSERT_TRUE(r.ok()) << r.message();
  std::vector<uint8_t> got;
  ASSERT_TRUE(Download(&got, imported.ptr, kLen).ok());
  EXPECT_TRUE(got == bytes);
  api->VmmUnmap(&imported);

  {
    lldd_test::AdxlPair pair;
    ASSERT_EQ(pair.Open(p, kLen, adxl::MEM_DEVICE, 10000), "") << llm_datadist::LlmDataDist::GetLastErrorMessage();
    ASSERT_EQ(pair.ReadAll(p, 10000), adxl::SUCCESS) << llm_datadist::LlmDataDist::GetLastErrorMessage();
    EXPECT_TRUE(pair.host == bytes);
  }
  EXPECT_EQ(adxl::AdxlEngine::FreeMem(p), adxl::SUCCESS);
  SetGpuApiForTesting(nullptr);
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

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--owner")
    return lldd::ServeCudaIpcOwner(lldd::TestedGpu(), std::atoi(argv[2]), 2, 16U << 20).ok() ? 0 : 1;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
