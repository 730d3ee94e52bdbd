#include "memory/allocator.h"

#include <atomic>
#include <mutex>

#include "common/logging.h"
#include "memory/shared_memory.h"

namespace lldd {
namespace {

std::mutex g_mu;
std::shared_ptr<DeviceMemoryProvider> g_provider;
std::atomic<uint64_t> g_next_allocation_id{1};
std::once_flag g_host_fallback_logged;

}  // namespace

std::shared_ptr<DeviceMemoryProvider> SetDeviceMemoryProvider(std::shared_ptr<DeviceMemoryProvider> provider) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_provider.swap(provider);
  return provider;
}

std::shared_ptr<DeviceMemoryProvider> GetDeviceMemoryProvider() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_provider;
}

Result AllocateCacheMemory(bool device, uint64_t bytes, int32_t device_id, std::shared_ptr<Allocation>* out,
                           const char* host_name) {
  if (device) {
    if (auto provider = GetDeviceMemoryProvider()) {
      LDD_RETURN_IF_ERROR(provider->Allocate(bytes, device_id, out));
      (*out)->set_id(g_next_allocation_id++);
      return Result::Ok();
    }
    std::call_once(g_host_fallback_logged, [] {
      LDD_LOG(Info) << "no usable GPU: caches placed on the device live in host memory";
    });
  }
  std::unique_ptr<SharedMemory> memory;
  Result r = SharedMemory::Create(bytes, host_name, &memory);
  if (!r.ok()) return device ? Result(llm_datadist::LLM_DEVICE_OUT_OF_MEMORY, r.message()) : r;
  memory->set_id(g_next_allocation_id++);
  *out = std::move(memory);
  return Result::Ok();
}

MemoryKind ClassifyUserMemory(const void* p) {
  auto provider = GetDeviceMemoryProvider();
  return provider && provider->IsDeviceMemory(p) ? kDeviceMemory : kHostRegistered;
}

}  // namespace lldd
