// The real GPU layer (cuda_gpu_api.cc, copy_kernel.cu's launch, the copier)
// on the fake CUDA runtime (fake_cuda_runtime.h), which keeps CUDA's rules:
// each test fails if the rule it names is broken by the code.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "gpu/cuda/cuda_gpu_api.h"
#include "gpu/cuda/fake_cuda_runtime.h"
#include "gpu/device_memory.h"
#include "gpu/gpu_copier.h"
#include "memory/allocator.h"

namespace lldd {
namespace {

class CudaGpuApiTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(fake_cuda::Config{}); }
  void TearDown() override { ASSERT_EQ(fake_cuda::StickyError(), cudaSuccess) << "a kernel touched what it may not"; }
  void Start(const fake_cuda::Config& config) {
    fake_cuda::Configure(config);
    (void)cudaGetLastError();
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    api = NewCudaGpuApi();
    ASSERT_TRUE(api->Available(nullptr));
  }
  void* DeviceBuffer(uint64_t bytes, int device = 0) {
    int was = 0;
    EXPECT_EQ(cudaGetDevice(&was), cudaSuccess);
    EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
    EXPECT_EQ(cudaSetDevice(was), cudaSuccess);
    return p;
  }
  static std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    std::iota(v.begin(), v.end(), seed);
    return v;
  }
  std::unique_ptr<GpuApi> api;
};

// cudaEventQuery's cudaErrorNotReady is the thread's last error too; left
// there, the application's next launch check reports its kernel as failed.
TEST_F(CudaGpuApiTest, WaitingLeavesNoErrorOnTheCallersThread) {
  constexpr size_t kBytes = 64 << 10;
  uint8_t* a = static_cast<uint8_t*>(DeviceBuffer(kBytes));
  uint8_t* b = static_cast<uint8_t*>(DeviceBuffer(kBytes));
  std::vector<uint8_t> want = Pattern(kBytes, 3);
  std::memcpy(a, want.data(), kBytes);  // fake device memory is host memory
  GpuCopier copier(*api, 0);
  ASSERT_TRUE(copier.Run({{b, a, kBytes}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(std::memcmp(b, want.data(), kBytes), 0);
  (void)cudaFree(a);
  (void)cudaFree(b);
}

// A launch reports its own status, not an error an earlier call left on the
// thread (the application's, or ours): copies in a row all succeed.
TEST_F(CudaGpuApiTest, LaunchIgnoresAnErrorLeftOnTheThread) {
  constexpr size_t kBytes = 4096;
  uint8_t* a = static_cast<uint8_t*>(DeviceBuffer(kBytes));
  uint8_t* b = static_cast<uint8_t*>(DeviceBuffer(kBytes));
  GpuCopier copier(*api, 0);
  const int launches = fake_cuda::KernelLaunches();
  for (int i = 0; i < 4; ++i) {
    std::vector<uint8_t> want = Pattern(kBytes, static_cast<uint8_t>(i));
    std::memcpy(a, want.data(), kBytes);
    ASSERT_NE(cudaSetDevice(99), cudaSuccess);  // the application's failed call, not yet checked
    Result r = copier.Run({{b, a, kBytes}}, Deadline::AfterMillis(5000));
    ASSERT_TRUE(r.ok()) << "copy " << i << ": " << r.message();
    EXPECT_EQ(std::memcmp(b, want.data(), kBytes), 0);
  }
  EXPECT_EQ(fake_cuda::KernelLaunches() - launches, 4);
  (void)cudaFree(a);
  (void)cudaFree(b);
}

// Where the GPU cannot use host addresses of registered memory, the kernel
// gets cudaHostGetDevicePointer's (the fake faults on the host address).
TEST_F(CudaGpuApiTest, KernelReachesRegisteredHostMemoryThroughItsDevicePointer) {
  for (bool usable : {false, true}) {
    fake_cuda::Config config;
    config.host_pointer_usable = usable;
    Start(config);
    constexpr size_t kBytes = 16 << 10;
    std::vector<uint8_t> host = Pattern(kBytes, 7);
    std::vector<uint8_t> back(kBytes, 0);
    uint8_t* dev = static_cast<uint8_t*>(DeviceBuffer(kBytes));
    ASSERT_TRUE(api->HostRegister(host.data(), kBytes).ok());
    ASSERT_TRUE(api->HostRegister(back.data(), kBytes).ok());
    GpuCopier copier(*api, 0);
    Result r = copier.Run({{dev, host.data(), kBytes}}, Deadline::AfterMillis(5000));
    ASSERT_TRUE(r.ok()) << (usable ? "host pointers usable: " : "device pointers needed: ") << r.message();
    ASSERT_TRUE(copier.Run({{back.data(), dev, kBytes}}, Deadline::AfterMillis(5000)).ok());
    EXPECT_EQ(back, host);
    EXPECT_TRUE(api->HostUnregister(host.data()).ok());
    EXPECT_TRUE(api->HostUnregister(back.data()).ok());
    (void)cudaFree(dev);
  }
}

// Memory the application pinned itself (a torch pinned tensor): accepted as
// it is, usable by the kernel, and still pinned after we let go of it.
TEST_F(CudaGpuApiTest, AlreadyPinnedMemoryIsUsedAndLeftPinned) {
  constexpr size_t kBytes = 8192;
  std::vector<uint8_t> host = Pattern(kBytes, 11);
  ASSERT_EQ(cudaHostRegister(host.data(), kBytes, cudaHostRegisterDefault), cudaSuccess);  // the application's
  Result r = api->HostRegister(host.data() + 4096, 4096);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the tolerated failure is left on the thread";
  uint8_t* dev = static_cast<uint8_t*>(DeviceBuffer(4096));
  GpuCopier copier(*api, 0);
  ASSERT_TRUE(copier.Run({{dev, host.data() + 4096, 4096}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(std::memcmp(dev, host.data() + 4096, 4096), 0);
  EXPECT_TRUE(api->HostUnregister(host.data() + 4096).ok());
  EXPECT_EQ(cudaHostUnregister(host.data()), cudaSuccess) << "the application's pinning was undone";
  (void)cudaFree(dev);
}

// A pointer CUDA does not know (plain host memory) is no error either.
TEST_F(CudaGpuApiTest, PointerQueriesLeaveNoError) {
  int on_stack = 0;
  GpuPointerInfo info;
  ASSERT_TRUE(api->PointerInfo(&on_stack, &info).ok());
  EXPECT_FALSE(info.device);
  void* dev = DeviceBuffer(1 << 20, 1);
  ASSERT_TRUE(api->PointerInfo(static_cast<uint8_t*>(dev) + 100, &info).ok());
  EXPECT_TRUE(info.device);
  EXPECT_EQ(info.device_id, 1);
  EXPECT_EQ(info.base, reinterpret_cast<uint64_t>(dev));
  EXPECT_EQ(info.size, 1U << 20);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  (void)cudaFree(dev);
}

// A failure we report as a Result is not also left for the application's
// next cudaGetLastError().
TEST_F(CudaGpuApiTest, ReportedFailuresLeaveNoError) {
  int on_stack = 0;
  GpuIpcHandle handle;
  EXPECT_FALSE(api->IpcGetHandle(&on_stack, &handle).ok());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaIpcGetMemHandle";
  EXPECT_FALSE(api->HostUnregister(&on_stack).ok());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaHostUnregister";
  api->DeviceFree(&on_stack);  // releases report nothing, and leave nothing
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaFree";
  api->HostFreePinned(&on_stack);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaFreeHost";
}

// The library runs on its callers' threads: whatever device it needs, the
// thread's current device is the caller's again afterwards.
TEST_F(CudaGpuApiTest, CallsGiveTheThreadItsDeviceBack) {
  constexpr size_t kBytes = 4096;
  uint8_t* a = static_cast<uint8_t*>(DeviceBuffer(kBytes, 0));
  uint8_t* b = static_cast<uint8_t*>(DeviceBuffer(kBytes, 0));
  ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
  int device = -1;
  GpuCopier copier(*api, 0);
  ASSERT_TRUE(copier.Run({{b, a, kBytes}}, Deadline::AfterMillis(5000)).ok());
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, 1) << "GpuCopier::Submit";
  GpuVmmBuffer vmm;
  ASSERT_TRUE(api->VmmAllocate(0, 1 << 20, &vmm).ok());
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, 1) << "VmmAllocate";
  GpuVmmBuffer imported;
  ASSERT_TRUE(api->VmmImport(vmm.fd, vmm.size, 0, &imported).ok());
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, 1) << "VmmImport";
  // Both mappings are for device 0's kernels, from a thread on device 1.
  ASSERT_TRUE(copier.Run({{static_cast<uint8_t*>(imported.ptr), a, kBytes}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(std::memcmp(vmm.ptr, a, kBytes), 0);
  api->VmmUnmap(&imported);
  api->VmmFree(&vmm);
  (void)cudaFree(a);
  (void)cudaFree(b);
}

// A peer's VMM fd mapped for more than its allocation holds (a size the
// peer sent) fails in cuMemMap and leaves nothing mapped.
TEST_F(CudaGpuApiTest, VmmImportOfMoreThanTheAllocationFails) {
  GpuVmmBuffer vmm;
  ASSERT_TRUE(api->VmmAllocate(0, 1 << 20, &vmm).ok());
  GpuVmmBuffer big;
  EXPECT_FALSE(api->VmmImport(vmm.fd, vmm.size * 2, 0, &big).ok());
  EXPECT_EQ(big.ptr, nullptr);
  GpuVmmBuffer exact;
  ASSERT_TRUE(api->VmmImport(vmm.fd, vmm.size, 0, &exact).ok());
  api->VmmUnmap(&exact);
  api->VmmFree(&vmm);
}

// CUDA refuses to open an IPC handle in the process that exported it; both
// ends of a link in one process (tests, a proxy) use the pointer itself.
TEST_F(CudaGpuApiTest, OwnIpcHandleOpensToTheSamePointer) {
  void* dev = DeviceBuffer(1 << 20);
  GpuIpcHandle handle;
  ASSERT_TRUE(api->IpcGetHandle(dev, &handle).ok());
  void* opened = nullptr;
  Result r = api->IpcOpen(handle, 0, &opened);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(opened, dev);
  EXPECT_TRUE(api->IpcClose(opened).ok());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaFree(dev), cudaSuccess) << "closing our own handle must not unmap it";
}

// Another process opens the handle for the device it names, whatever device
// its thread is on, and a kernel on that device reads it.
TEST_F(CudaGpuApiTest, IpcOpensForTheNamedDevice) {
  constexpr size_t kBytes = 1 << 20;
  uint8_t* dev = static_cast<uint8_t*>(DeviceBuffer(kBytes));
  std::vector<uint8_t> want = Pattern(kBytes, 5);
  std::memcpy(dev, want.data(), kBytes);
  GpuIpcHandle handle;
  ASSERT_TRUE(api->IpcGetHandle(dev, &handle).ok());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto peer = NewCudaGpuApi();  // the other process's own GPU layer
    int code = 0;
    if (cudaSetDevice(1) != cudaSuccess) _exit(10);
    void* p = nullptr;
    if (!peer->IpcOpen(handle, 0, &p).ok()) _exit(11);
    int device = -1;
    if (cudaGetDevice(&device) != cudaSuccess || device != 1) code = 12;
    GpuPointerInfo info;
    if (code == 0 && (!peer->PointerInfo(p, &info).ok() || info.size != kBytes)) code = 13;
    void* mine = nullptr;
    (void)cudaSetDevice(0);
    if (code == 0 && cudaMalloc(&mine, kBytes) != cudaSuccess) code = 14;
    (void)cudaSetDevice(1);
    if (code == 0) {
      GpuCopier copier(*peer, 0);
      Result r = copier.Run({{static_cast<uint8_t*>(mine), static_cast<uint8_t*>(p), kBytes}},
                            Deadline::AfterMillis(5000));
      if (!r.ok()) {
        code = 15;
      } else if (std::memcmp(mine, want.data(), kBytes) != 0) {
        code = 16;
      }
    }
    if (code == 0 && !peer->IpcClose(p).ok()) code = 17;
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10 set device, 11 open, 12 device not restored, 13 size, 15 kernel, 16 bytes";
  (void)cudaFree(dev);
}

// Without the VMM entry points, VMM support or POSIX-fd handles, kDevice
// caches fall back to host memory (no provider) instead of failing.
TEST_F(CudaGpuApiTest, VmmSupportIsAskedBeforeKDeviceUsesIt) {
  struct Case {
    const char* what;
    fake_cuda::Config config;
  };
  std::vector<Case> cases(4);
  cases[0].what = "supported";
  cases[1].what = "no cuMemCreate";
  cases[1].config.missing_entry_points = {"cuMemCreate"};
  cases[2].what = "no VMM";
  cases[2].config.vmm_supported = false;
  cases[3].what = "no POSIX fd handles";
  cases[3].config.posix_fd_supported = false;
  for (const Case& c : cases) {
    Start(c.config);
    const bool supported = c.what == cases[0].what;
    std::string why;
    EXPECT_EQ(api->VmmSupported(0, &why), supported) << c.what;
    if (!supported) {
      EXPECT_FALSE(why.empty()) << c.what;
    }
    GpuVmmBuffer b;
    Result r = api->VmmAllocate(0, 4096, &b);
    EXPECT_EQ(r.ok(), supported) << c.what;
    if (r.ok()) {
      api->VmmFree(&b);
    } else {
      EXPECT_EQ(r.code(), llm_datadist::LLM_FEATURE_NOT_ENABLED) << c.what << ": " << r.message();
    }
    auto before = SetDeviceMemoryProvider(nullptr);
    SetGpuApiForTesting(api.get());
    EXPECT_EQ(InstallGpuMemoryProvider(), supported) << c.what;
    SetGpuApiForTesting(nullptr);
    SetDeviceMemoryProvider(before);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << c.what;
  }
}

}  // namespace
}  // namespace lldd
