#include "bench/user_memory.h"

#include <sys/mman.h>

#include "adxl/adxl_engine.h"

namespace lldd_bench {

std::string AllocateUserBuffer(bool mallocmem, uint64_t bytes, void** out) {
  if (mallocmem) {
    const adxl::Status st = adxl::AdxlEngine::MallocMem(adxl::MEM_HOST, bytes, out);
    return st == adxl::SUCCESS ? "" : "MallocMem returned " + std::to_string(st);
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return "out of memory for " + std::to_string(bytes) + " bytes";
  *out = p;
  return "";
}

void FreeUserBuffer(bool mallocmem, void* p, uint64_t bytes) {
  if (mallocmem) {
    (void)adxl::AdxlEngine::FreeMem(p);
  } else {
    ::munmap(p, bytes);
  }
}

}  // namespace lldd_bench
