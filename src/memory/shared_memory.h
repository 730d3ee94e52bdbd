// Page-aligned host memory backed by a memfd, so that a peer on the same
// host can map the very same pages (the descriptor travels over a Unix
// socket) and a pull becomes one memcpy.
#ifndef LLM_DATADIST_SRC_MEMORY_SHARED_MEMORY_H_
#define LLM_DATADIST_SRC_MEMORY_SHARED_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/result.h"
#include "memory/allocation.h"

namespace lldd {

class SharedMemory : public Allocation {
 public:
  // Allocates `size` bytes (rounded up to whole pages), zero-filled.
  static Result Create(size_t size, const char* name, std::unique_ptr<SharedMemory>* out);
  // Maps a peer's memfd read-write.
  static Result Map(int fd, size_t size, std::unique_ptr<SharedMemory>* out);
  ~SharedMemory() override;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  uint8_t* data() const override { return data_; }
  uint64_t size() const override { return size_; }
  MemoryKind kind() const override { return kHostAllocated; }
  int shareable_fd() const override { return fd_; }
  int fd() const { return fd_; }

 private:
  SharedMemory(int fd, uint8_t* data, size_t size) : fd_(fd), data_(data), size_(size) {}
  int fd_;
  uint8_t* data_;
  size_t size_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_SHARED_MEMORY_H_
