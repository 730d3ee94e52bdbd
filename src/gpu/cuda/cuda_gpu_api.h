// The real GPU layer (cuda_gpu_api.cc), as a fresh instance: SystemGpuApi()
// holds the process's one; tests build more (on the fake CUDA runtime, each
// with the configuration it was created under).
#ifndef LLM_DATADIST_SRC_GPU_CUDA_CUDA_GPU_API_H_
#define LLM_DATADIST_SRC_GPU_CUDA_CUDA_GPU_API_H_

#include <memory>

#include "gpu/gpu_api.h"

namespace lldd {

std::unique_ptr<GpuApi> NewCudaGpuApi();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_CUDA_CUDA_GPU_API_H_
