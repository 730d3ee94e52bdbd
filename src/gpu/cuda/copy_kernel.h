// The gather/scatter kernel (copy_kernel.cu): one launch copies every run
// of a table, one thread block per run.
#ifndef LLM_DATADIST_SRC_GPU_CUDA_COPY_KERNEL_H_
#define LLM_DATADIST_SRC_GPU_CUDA_COPY_KERNEL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gpu/gpu_api.h"

namespace lldd {

cudaError_t LaunchCopyRunsKernel(const GpuCopyRun* device_table, uint32_t count, const volatile uint32_t* cancel,
                                 cudaStream_t stream);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_CUDA_COPY_KERNEL_H_
