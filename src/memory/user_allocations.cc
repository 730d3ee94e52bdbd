#include "memory/user_allocations.h"

#include <map>
#include <mutex>

#include "memory/allocator.h"

namespace lldd {
namespace {

// What /proc/<pid>/maps shows for the host memory, here and in peers that map it.
constexpr char kUserMemoryName[] = "llm_datadist_mallocmem";

std::mutex g_mu;
// By start address; ranges never overlap (each is its own mapping).
std::map<uintptr_t, std::shared_ptr<Allocation>>& Table() {
  static auto* table = new std::map<uintptr_t, std::shared_ptr<Allocation>>();  // outlives static destructors
  return *table;
}

}  // namespace

Result AllocateUserMemory(bool device, uint64_t bytes, int32_t device_id, void** ptr) {
  if (ptr == nullptr) return Result::ParamInvalid("ptr is null");
  if (bytes == 0) return Result::ParamInvalid("size is 0");
  // AllocateCacheMemory would place device memory in host memory on a
  // machine without a GPU; a user asking for device memory by name gets
  // an answer instead.
  if (device && !GetDeviceMemoryProvider()) return Result::Failed("device memory asked for, but there is no usable GPU");
  std::shared_ptr<Allocation> memory;
  LDD_RETURN_IF_ERROR(AllocateCacheMemory(device, bytes, device_id, &memory, kUserMemoryName));
  std::lock_guard<std::mutex> lock(g_mu);
  *ptr = memory->data();
  Table()[reinterpret_cast<uintptr_t>(memory->data())] = std::move(memory);
  return Result::Ok();
}

Result FreeUserMemory(void* ptr) {
  if (ptr == nullptr) return Result::ParamInvalid("ptr is null");
  std::shared_ptr<Allocation> memory;  // released outside the lock
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = Table().find(reinterpret_cast<uintptr_t>(ptr));
  if (it == Table().end())
    return Result::ParamInvalid(Msg("address ", ptr, " was not returned by MallocMem, or was freed already"));
  memory = std::move(it->second);
  Table().erase(it);
  return Result::Ok();
}

std::shared_ptr<const Allocation> UserAllocationAt(const void* ptr) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = Table().find(reinterpret_cast<uintptr_t>(ptr));
  return it == Table().end() ? nullptr : it->second;
}

std::shared_ptr<const Allocation> FindUserAllocation(uint64_t addr, uint64_t len, uint64_t* offset) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = Table().upper_bound(static_cast<uintptr_t>(addr));
  if (it == Table().begin()) return nullptr;
  --it;
  const uint64_t base = it->first;
  const uint64_t size = it->second->size();
  if (addr - base >= size || len > size - (addr - base)) return nullptr;
  *offset = addr - base;
  return it->second;
}

}  // namespace lldd
