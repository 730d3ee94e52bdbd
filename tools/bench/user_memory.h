// Memory the benchmark registers as the user's (RegisterKvCache,
// RegisterMem), on this side and on the peer's: from mmap, or from
// adxl::AdxlEngine::MallocMem (shareable: a peer on this host maps it
// rather than reaching it through the kernel).
#ifndef LLM_DATADIST_TOOLS_BENCH_USER_MEMORY_H_
#define LLM_DATADIST_TOOLS_BENCH_USER_MEMORY_H_

#include <cstdint>
#include <string>

namespace lldd_bench {

// `*out` holds `bytes`; "" on success, else why not.
std::string AllocateUserBuffer(bool mallocmem, uint64_t bytes, void** out);
void FreeUserBuffer(bool mallocmem, void* p, uint64_t bytes);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_USER_MEMORY_H_
