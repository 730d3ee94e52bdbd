// Memory the library allocated for a cache (AllocateCache), as opposed to
// memory a user registered. An allocation may be shareable: another
// process on the same host can map the very same memory through a file
// descriptor (a memfd for host memory; a POSIX-fd VMM handle for GPU
// memory). Regions of a cache point at their allocation, so that a
// transport can share it without the region table knowing how.
#ifndef LLM_DATADIST_SRC_MEMORY_ALLOCATION_H_
#define LLM_DATADIST_SRC_MEMORY_ALLOCATION_H_

#include <cstdint>

#include "memory/memory_kind.h"

namespace lldd {

class Allocation {
 public:
  virtual ~Allocation() = default;
  virtual uint8_t* data() const = 0;
  virtual uint64_t size() const = 0;
  virtual MemoryKind kind() const = 0;
  // A descriptor a peer process can map (owned by the allocation), or -1.
  virtual int shareable_fd() const { return -1; }
  // Unique per process; tells a peer that two regions share one allocation.
  uint64_t id() const { return id_; }
  void set_id(uint64_t id) { id_ = id; }

 private:
  uint64_t id_ = 0;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_ALLOCATION_H_
