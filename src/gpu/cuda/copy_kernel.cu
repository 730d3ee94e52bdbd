// One thread block per run; 16-byte loads and stores when source,
// destination and length allow, four in flight per thread. The copier
// (gpu/gpu_copier.cc) cuts long runs into pieces so that a few large
// blocks still spread over every SM.
//
// A block reads the cancel flag (pinned host memory the copier sets at its
// deadline) before it touches its run: once the flag is up, no block that
// has not started writes anything, so a cancelled launch ends after the
// blocks already running (one piece each).
#include "gpu/cuda/copy_kernel.h"

namespace lldd {
namespace {

constexpr int kThreads = 512;
constexpr int kUnroll = 4;

template <typename T>
__device__ __forceinline__ void CopyWords(T* __restrict__ dst, const T* __restrict__ src, uint64_t words) {
  const uint64_t stride = static_cast<uint64_t>(blockDim.x) * kUnroll;
  uint64_t i = threadIdx.x;
  for (; i + (kUnroll - 1) * blockDim.x < words; i += stride) {
    T v[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) v[k] = src[i + k * blockDim.x];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) dst[i + k * blockDim.x] = v[k];
  }
  for (; i < words; i += blockDim.x) dst[i] = src[i];
}

__global__ void __launch_bounds__(kThreads)
    CopyRunsKernel(const GpuCopyRun* __restrict__ table, const volatile uint32_t* cancel) {
  __shared__ bool cancelled;
  if (threadIdx.x == 0) cancelled = cancel != nullptr && *cancel != 0;
  __syncthreads();
  if (cancelled) return;
  const GpuCopyRun run = table[blockIdx.x];
  uint8_t* dst = reinterpret_cast<uint8_t*>(run.dst);
  const uint8_t* src = reinterpret_cast<const uint8_t*>(run.src);
  const uint64_t n = run.length;
  if (((run.dst | run.src) & 15) == 0) {
    CopyWords(reinterpret_cast<uint4*>(dst), reinterpret_cast<const uint4*>(src), n / 16);
    for (uint64_t i = (n & ~uint64_t{15}) + threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
  } else if (((run.dst | run.src) & 3) == 0) {
    CopyWords(reinterpret_cast<uint32_t*>(dst), reinterpret_cast<const uint32_t*>(src), n / 4);
    for (uint64_t i = (n & ~uint64_t{3}) + threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
  } else {
    CopyWords(dst, src, n);
  }
}

}  // namespace

cudaError_t LaunchCopyRunsKernel(const GpuCopyRun* device_table, uint32_t count, const volatile uint32_t* cancel,
                                 cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  // The launch's own status: cudaGetLastError() after `<<<>>>` would also
  // return an error an earlier call left on this thread (the application's,
  // or a cudaErrorNotReady from a query) and fail a launch that was queued.
  void* args[] = {&device_table, &cancel};
  return cudaLaunchKernel(reinterpret_cast<const void*>(&CopyRunsKernel), dim3(count), dim3(kThreads), args, 0,
                          stream);
}

}  // namespace lldd
