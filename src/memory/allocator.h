// Where cache memory comes from, and what kind user memory is.
//
// AllocateCache gets shareable memory: host memory in a sealed memfd, or,
// when a GPU layer is installed (SetDeviceMemoryProvider) and the cache is
// placed on the device, GPU memory from it. RegisterKvCache asks
// ClassifyUserMemory whether an address is host or GPU memory.
// Thread-safe.
#ifndef LLM_DATADIST_SRC_MEMORY_ALLOCATOR_H_
#define LLM_DATADIST_SRC_MEMORY_ALLOCATOR_H_

#include <cstdint>
#include <memory>

#include "common/result.h"
#include "memory/allocation.h"
#include "memory/memory_kind.h"

namespace lldd {

// What a GPU layer provides; absent (null) in builds and on machines
// without a usable GPU, where device placement falls back to host memory.
class DeviceMemoryProvider {
 public:
  virtual ~DeviceMemoryProvider() = default;
  virtual Result Allocate(uint64_t bytes, int32_t device_id, std::shared_ptr<Allocation>* out) = 0;
  // True when `p` is GPU memory (from cudaMalloc, a framework allocator or
  // ours).
  virtual bool IsDeviceMemory(const void* p) = 0;
};

// Installs the GPU layer (null removes it). Returns the previous one.
std::shared_ptr<DeviceMemoryProvider> SetDeviceMemoryProvider(std::shared_ptr<DeviceMemoryProvider> provider);
std::shared_ptr<DeviceMemoryProvider> GetDeviceMemoryProvider();

// `device`: the cache is placed on the device (CachePlacement::kDevice).
// `host_name` names host memory's memfd (what /proc/<pid>/maps shows).
Result AllocateCacheMemory(bool device, uint64_t bytes, int32_t device_id, std::shared_ptr<Allocation>* out,
                           const char* host_name = "llm_datadist_cache");
MemoryKind ClassifyUserMemory(const void* p);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_ALLOCATOR_H_
