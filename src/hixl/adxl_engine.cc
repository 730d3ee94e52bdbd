// adxl::AdxlEngine's own calls: the memory it allocates for the caller,
// which is the library's user allocations (memory/user_allocations.h).
#include "adxl/adxl_engine.h"

#include <unistd.h>

#include <cstdio>

#include "gpu/device_memory.h"
#include "gpu/gpu_api.h"
#include "hixl/hixl_status.h"
#include "memory/memory_kind.h"
#include "memory/user_allocations.h"

namespace adxl {
namespace {

using lldd::Result;

Status Report(const char* api, const Result& r) { return lldd::hixl_impl::ReportHixl(api, r); }

}  // namespace

Status AdxlEngine::MallocMem(MemType type, size_t size, void** ptr) {
  if (type != MEM_HOST && type != MEM_DEVICE)
    return Report("MallocMem", Result::ParamInvalid(lldd::Msg("memory type ", static_cast<int>(type),
                                                              " is neither MEM_HOST nor MEM_DEVICE")));
  int device = 0;
  if (type == MEM_DEVICE) {
    // Before any engine has looked for a GPU, this call may be the first.
    (void)lldd::InstallGpuMemoryProvider();
    // The calling thread's current device, as the vendor's allocates on.
    if (!lldd::Gpu().GetDevice(&device).ok()) device = 0;
  }
  return Report("MallocMem", lldd::AllocateUserMemory(type == MEM_DEVICE, size, device, ptr));
}

Status AdxlEngine::ExportToShareableHandle(void* addr, ShareableHandle& handle) {
  if (addr == nullptr) return Report("ExportToShareableHandle", Result::ParamInvalid("addr is null"));
  auto memory = lldd::UserAllocationAt(addr);
  if (!memory)
    return Report("ExportToShareableHandle",
                  Result::ParamInvalid(lldd::Msg("address ", addr, " is not the start of memory from MallocMem, "
                                                 "or that memory was freed")));
  if (memory->shareable_fd() < 0)
    return Report("ExportToShareableHandle", Result::Failed("this memory has no descriptor another process can map"));
  ShareableHandle h{};
  h.pid = static_cast<int32_t>(getpid());
  h.fd = memory->shareable_fd();
  h.size = memory->size();
  h.mem_type = memory->kind() == lldd::kDeviceMemory ? MEM_DEVICE : MEM_HOST;
  std::snprintf(h.path, sizeof(h.path), "/proc/%d/fd/%d", h.pid, h.fd);
  handle = h;
  return SUCCESS;
}

Status AdxlEngine::FreeMem(void* ptr) { return Report("FreeMem", lldd::FreeUserMemory(ptr)); }

}  // namespace adxl
