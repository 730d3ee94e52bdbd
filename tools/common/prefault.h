// Touching memory before it is timed.
//
// A serving engine initialises its KV pool at startup; the first write to
// each page of a fresh allocation costs a page fault (and in a VM often a
// host fault too). Without touching, the first requests of a run would
// measure the kernel handing out pages rather than the transfer.
#ifndef LLM_DATADIST_TOOLS_COMMON_PREFAULT_H_
#define LLM_DATADIST_TOOLS_COMMON_PREFAULT_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lldd_tools {

// Writes zeros over every tensor; returns the seconds it took.
double Prefault(const std::vector<uintptr_t>& tensor_addrs, size_t tensor_bytes);

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_PREFAULT_H_
