// Cross-memory attach: reading and writing another process's memory with
// process_vm_readv/process_vm_writev (one copy, no shared mapping). Needs
// ptrace permission over the peer; where the kernel denies it the caller
// gets LLM_FEATURE_NOT_ENABLED and falls back to TCP.
#ifndef LLM_DATADIST_SRC_TRANSPORT_SHM_CROSS_MEMORY_H_
#define LLM_DATADIST_SRC_TRANSPORT_SHM_CROSS_MEMORY_H_

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.h"

namespace lldd {

struct RemoteCopy {
  uint8_t* local = nullptr;
  uint64_t remote_address = 0;
  uint64_t length = 0;
};

Result CrossMemoryTransfer(pid_t pid, const std::vector<RemoteCopy>& copies, bool write);
// The same, split over the copy threads when the bytes are many (each
// thread's system calls pin and copy their own share).
Result ParallelCrossMemoryTransfer(pid_t pid, const std::vector<RemoteCopy>& copies, bool write,
                                   unsigned max_threads = 0);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_SHM_CROSS_MEMORY_H_
