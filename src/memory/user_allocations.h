// Memory the library allocates on a user's behalf (the adxl API's
// MallocMem), remembered process-wide. Registering a range of it later
// (RegisterMem, RegisterKvCache) makes regions that name the allocation,
// as AllocateCache's do, so that a peer on this host maps the very same
// pages (a memfd over shm, a VMM handle over cuda_ipc) and a transfer is
// one copy instead of a trip through the kernel per request.
//
// Freeing drops the table's hold only: regions registered on the memory
// keep it mapped until they are deregistered, so no transfer ever touches
// unmapped memory. Thread-safe.
#ifndef LLM_DATADIST_SRC_MEMORY_USER_ALLOCATIONS_H_
#define LLM_DATADIST_SRC_MEMORY_USER_ALLOCATIONS_H_

#include <cstdint>
#include <memory>

#include "common/result.h"
#include "memory/allocation.h"

namespace lldd {

// `device`: GPU memory from the installed GPU layer (else FAILED: there is
// none); host memory otherwise. `*ptr` is page-aligned and zero-filled.
Result AllocateUserMemory(bool device, uint64_t bytes, int32_t device_id, void** ptr);
// PARAM_INVALID unless `ptr` is what AllocateUserMemory returned and has
// not been freed since.
Result FreeUserMemory(void* ptr);
// The allocation that starts exactly at `ptr`, or null.
std::shared_ptr<const Allocation> UserAllocationAt(const void* ptr);
// The allocation [addr, addr + len) lies wholly inside, with the range's
// offset in it; null when there is none.
std::shared_ptr<const Allocation> FindUserAllocation(uint64_t addr, uint64_t len, uint64_t* offset);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_USER_ALLOCATIONS_H_
