// GPU memory for caches, and recognising GPU memory a user registers.
//
// The memory layer (memory/allocator.cc) calls these:
//   AllocateCacheMemory(device=true, ...) -> AllocateDeviceCacheMemory();
//     LLM_FEATURE_NOT_ENABLED there means "no GPU here": allocate host
//     memory instead (NoteDeviceIsHostMemory() logs that once).
//   ClassifyUserMemory(p) -> kDeviceMemory if IsDeviceMemory(p).
#ifndef LLM_DATADIST_SRC_GPU_DEVICE_MEMORY_H_
#define LLM_DATADIST_SRC_GPU_DEVICE_MEMORY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "gpu/gpu_api.h"
#include "memory/allocation.h"
#include "memory/allocator.h"

namespace lldd {

// GPU memory from the VMM API, exportable as a POSIX fd (shareable_fd()).
class DeviceAllocation final : public Allocation {
 public:
  DeviceAllocation(GpuApi& api, const GpuVmmBuffer& buffer) : api_(api), buffer_(buffer) {}
  ~DeviceAllocation() override { api_.VmmFree(&buffer_); }
  DeviceAllocation(const DeviceAllocation&) = delete;
  DeviceAllocation& operator=(const DeviceAllocation&) = delete;

  uint8_t* data() const override { return static_cast<uint8_t*>(buffer_.ptr); }
  uint64_t size() const override { return buffer_.size; }
  MemoryKind kind() const override { return kDeviceMemory; }
  int shareable_fd() const override { return buffer_.fd; }
  int device() const { return buffer_.device; }

 private:
  GpuApi& api_;
  GpuVmmBuffer buffer_;
};

// `device_id` < 0 means GPU 0. LLM_FEATURE_NOT_ENABLED: no GPU (or no
// CUDA in this build); other failures (out of memory, bad id) are real.
Result AllocateDeviceCacheMemory(uint64_t bytes, int32_t device_id, std::shared_ptr<Allocation>* out);

// Whether `p` is GPU memory (cudaMalloc, VMM, a framework's allocator).
bool IsDeviceMemory(const void* p, int* device_id = nullptr);

// A DeviceMemoryProvider over `api` (AllocateDeviceCacheMemory, IsDeviceMemory).
std::shared_ptr<DeviceMemoryProvider> MakeGpuMemoryProvider(GpuApi& api);

// Installs the provider over Gpu() if a GPU is usable and none is installed
// yet; otherwise logs once that kDevice caches are host memory, and why.
// Returns whether a GPU provider is installed.
bool InstallGpuMemoryProvider();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_DEVICE_MEMORY_H_
