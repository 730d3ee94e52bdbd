// A stand-in for the CUDA runtime (libcudart, fake_cuda_runtime.cc) and the
// driver entry points (fake_cuda_driver.cc) that gpu/cuda/cuda_gpu_api.cc uses, with CUDA's rules and no GPU: the
// test program cuda_runtime_tests links the *real* GPU layer
// (cuda_gpu_api.cc and copy_kernel.cu's host side) against it instead of
// libcudart_static, so that the real code's handling of CUDA's rules is
// tested in CI.
//
// The rules it keeps, strictly:
// - every failing call (and cudaEventQuery's cudaErrorNotReady) records the
//   calling thread's last error, which cudaGetLastError returns and clears;
//   an illegal address in a kernel is sticky (every later call fails);
// - the current device is per thread; a kernel launched on a stream of
//   another device fails; memory opened by IPC belongs to the context of the
//   device current at the open; a kernel reaches another device's memory only
//   after cudaDeviceEnablePeerAccess;
// - a kernel reaches registered or pinned host memory at its host address
//   only where cudaDevAttrCanUseHostPointerForRegisteredMem is set (config),
//   else only through cudaHostGetDevicePointer's address;
// - cudaHostRegister of memory already registered fails
//   (cudaErrorHostMemoryAlreadyRegistered);
// - cudaIpcOpenMemHandle refuses a handle exported by the same process;
// - VMM entry points, VMM support and POSIX-fd handle support can be taken away.
// Work queued on a stream runs when an event after it is queried; the first
// query of each recorded event reports cudaErrorNotReady, as a real GPU
// would for work just queued.
#ifndef LLM_DATADIST_SRC_GPU_CUDA_FAKE_CUDA_RUNTIME_H_
#define LLM_DATADIST_SRC_GPU_CUDA_FAKE_CUDA_RUNTIME_H_

#include <cuda_runtime_api.h>

#include <set>
#include <string>

namespace lldd::fake_cuda {

struct Config {
  int devices = 2;
  bool host_pointer_usable = false;  // cudaDevAttrCanUseHostPointerForRegisteredMem
  bool vmm_supported = true;         // CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED
  bool posix_fd_supported = true;    // CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED
  std::set<std::string> missing_entry_points;
};

// Applies `config` to what is created from now on (and clears the sticky error).
void Configure(const Config& config);
// The sticky error (cudaErrorIllegalAddress after a bad kernel access), or cudaSuccess.
cudaError_t StickyError();
// While stalled, queued work does not run (events stay not ready).
void Stall(bool stalled);
// Kernels launched so far (the copy kernel run on the host).
int KernelLaunches();

}  // namespace lldd::fake_cuda

#endif  // LLM_DATADIST_SRC_GPU_CUDA_FAKE_CUDA_RUNTIME_H_
