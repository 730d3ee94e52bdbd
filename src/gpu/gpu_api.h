// Every GPU call the library makes, behind one interface.
//
// The real implementation (gpu/cuda/cuda_gpu_api.cc) exists only in builds
// with LLM_DATADIST_WITH_CUDA; it links the CUDA runtime statically and
// reaches the driver API through cudaGetDriverEntryPointByVersion, so the
// library loads on machines without a driver. A test replaces it with
// FakeGpuApi (gpu/fake_gpu_api.h): host memory standing in for GPU memory,
// memfds standing in for VMM handles, so that planning, handle exchange,
// revocation and staging are tested on machines without a GPU.
//
// Handles (streams, events) are opaque pointers owned by the implementation.
// Every method is thread-safe.
#ifndef LLM_DATADIST_SRC_GPU_GPU_API_H_
#define LLM_DATADIST_SRC_GPU_GPU_API_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace lldd {

using GpuStream = void*;
using GpuEvent = void*;

// One copy of the gather/scatter kernel's table: `length` bytes from `src`
// to `dst`, both addresses the GPU can reach (device memory, or host memory
// registered with HostRegister / allocated with HostAllocPinned).
struct GpuCopyRun {
  uint64_t dst = 0;
  uint64_t src = 0;
  uint64_t length = 0;
};

// A VMM allocation: physical memory mapped at `ptr`, shareable with another
// process through `fd` (a POSIX file descriptor, owned by the allocation).
struct GpuVmmBuffer {
  void* ptr = nullptr;
  uint64_t size = 0;    // rounded up to the allocation granularity
  uint64_t handle = 0;  // CUmemGenericAllocationHandle
  int fd = -1;
  int device = 0;
};

using GpuIpcHandle = std::array<uint8_t, 64>;  // cudaIpcMemHandle_t

struct GpuPointerInfo {
  bool device = false;  // GPU memory (cudaMemoryTypeDevice or managed)
  int device_id = -1;
  // The allocation the pointer lies in (cuMemGetAddressRange), when known.
  uint64_t base = 0;
  uint64_t size = 0;
};

class GpuApi {
 public:
  virtual ~GpuApi() = default;

  // False when there is no driver or no GPU; `reason` says which.
  virtual bool Available(std::string* reason) const = 0;
  virtual int DeviceCount() const = 0;
  // Makes `device` current on the calling thread (GpuDeviceGuard restores it).
  virtual Result SetDevice(int device) = 0;
  // The calling thread's current device.
  virtual Result GetDevice(int* device) = 0;
  // Whether VmmAllocate can work on `device` (VMM entry points, VMM and
  // POSIX-fd handle support); kDevice caches are host memory where not.
  virtual bool VmmSupported(int device, std::string* reason) = 0;

  virtual Result PointerInfo(const void* p, GpuPointerInfo* out) = 0;
  // Lets kernels on `device` reach cudaMalloc memory of `peer` (once per
  // pair; FEATURE_NOT_ENABLED where the GPUs cannot).
  virtual Result EnablePeerAccess(int device, int peer) = 0;

  // VMM memory that another process can import (POSIX fd handle).
  virtual Result VmmAllocate(int device, uint64_t bytes, GpuVmmBuffer* out) = 0;
  virtual void VmmFree(GpuVmmBuffer* buffer) = 0;
  // Imports a peer's exported fd (not consumed) and maps `size` bytes of it,
  // readable and writable by `device`.
  virtual Result VmmImport(int fd, uint64_t size, int device, GpuVmmBuffer* out) = 0;
  virtual void VmmUnmap(GpuVmmBuffer* buffer) = 0;

  // Legacy IPC for memory from cudaMalloc (the allocation's base pointer).
  virtual Result IpcGetHandle(void* base, GpuIpcHandle* out) = 0;
  // Opens a peer's handle for kernels on `device` (a handle this process
  // exported gives back its own pointer: CUDA refuses to open those).
  virtual Result IpcOpen(const GpuIpcHandle& handle, int device, void** out) = 0;
  virtual Result IpcClose(void* p) = 0;

  // Pins host memory (ours or a peer's mapped memfd) for the GPU's DMA.
  // Memory pinned already (by the application) is accepted as it is, and a
  // later HostUnregister leaves it pinned.
  virtual Result HostRegister(void* p, uint64_t bytes) = 0;
  virtual Result HostUnregister(void* p) = 0;
  virtual Result HostAllocPinned(uint64_t bytes, void** out) = 0;
  virtual void HostFreePinned(void* p) = 0;
  virtual Result DeviceAlloc(uint64_t bytes, void** out) = 0;  // scratch
  virtual void DeviceFree(void* p) = 0;

  virtual Result StreamCreate(GpuStream* out) = 0;
  virtual void StreamDestroy(GpuStream stream) = 0;
  virtual Result EventCreate(GpuEvent* out) = 0;
  virtual void EventDestroy(GpuEvent event) = 0;
  virtual Result EventRecord(GpuEvent event, GpuStream stream) = 0;
  // Ok when every work before the record has finished; Timeout while it runs
  // (code LLM_TIMEOUT, the caller decides how long to wait); other: failure.
  virtual Result EventQuery(GpuEvent event) = 0;

  virtual Result MemcpyAsync(void* dst, const void* src, uint64_t bytes, GpuStream stream) = 0;
  // One launch that copies every run of `table` (`count` entries, in memory
  // the GPU reads: device scratch filled by MemcpyAsync, or pinned host).
  // Each run is read as it starts: once `*cancel` (pinned host memory; may be
  // null) is non-zero, runs that have not started are skipped, so a caller
  // that sets it waits at most for the runs already under way.
  virtual Result LaunchCopyRuns(const GpuCopyRun* table, uint32_t count, const volatile uint32_t* cancel,
                                GpuStream stream) = 0;
  // Rewrites the host addresses in `runs` (registered or pinned memory) to
  // the addresses a kernel on `device` reaches them at: the host address
  // where cudaDevAttrCanUseHostPointerForRegisteredMem is set, else the one
  // cudaHostGetDevicePointer gives. Where the GPU shares host addresses (and
  // in the fake GPU) it leaves them as they are.
  virtual void KernelAddresses(int device, GpuCopyRun* runs, uint32_t count) {
    (void)device;
    (void)runs;
    (void)count;
  }
};

// The process's GPU layer: the real one in CUDA builds, else one that is
// never available. Tests may replace it (nullptr restores the default).
GpuApi& Gpu();
void SetGpuApiForTesting(GpuApi* api);
// The built-in implementation (not the test override).
GpuApi& SystemGpuApi();

// True when the library was built with CUDA.
bool BuiltWithCuda();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_GPU_API_H_
