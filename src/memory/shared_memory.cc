#include "memory/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace lldd {
namespace {
// MADV_POPULATE_WRITE (Linux 5.14); older kernels refuse it and we touch
// the pages instead.
constexpr int kMadvPopulateWrite = 23;
}  // namespace

Result SharedMemory::Create(size_t size, const char* name, std::unique_ptr<SharedMemory>* out) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (size == 0 || size > (SIZE_MAX - page)) return Result::ParamInvalid(Msg("cannot allocate ", size, " bytes"));
  size_t rounded = (size + page - 1) / page * page;
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Result::OutOfMemory(Msg("memfd_create: ", std::strerror(errno)));
  if (ftruncate(fd, static_cast<off_t>(rounded)) != 0) {
    int err = errno;
    close(fd);
    return Result::OutOfMemory(Msg("cannot size shared memory to ", rounded, " bytes: ", std::strerror(err)));
  }
  // Peers map this memory: sealed, its size can never change under them (Map checks).
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int err = errno;
    close(fd);
    return Result::Failed(Msg("cannot seal shared memory: ", std::strerror(err)));
  }
  void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    close(fd);
    return Result::OutOfMemory(Msg("cannot map ", rounded, " bytes: ", std::strerror(err)));
  }
  // Back every page now, as a serving engine expects of its KV pool: the
  // first transfer should not pay a page fault per 4 KiB (and running out
  // of memory should fail here, not in the middle of a transfer).
  if (madvise(p, rounded, kMadvPopulateWrite) != 0) {
    for (size_t off = 0; off < rounded; off += page) static_cast<volatile uint8_t*>(p)[off] = 0;
  }
  out->reset(new SharedMemory(fd, static_cast<uint8_t*>(p), rounded));
  return Result::Ok();
}

Result SharedMemory::Map(int fd, size_t size, std::unique_ptr<SharedMemory>* out) {
  // A peer's descriptor must be a memfd sealed against shrinking and at
  // least `size` bytes long: a copy past the end of the file would kill this
  // process with SIGBUS.
  struct stat st {};
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 || fstat(fd, &st) != 0 || st.st_size < 0 ||
      static_cast<uint64_t>(st.st_size) < size) {
    close(fd);
    return Result::Failed(Msg("peer memory of ", size, " bytes is not a sealed memfd of that size"));
  }
  // Pre-populated: the pages exist already (the owner touched them), so this
  // only builds page tables, once, instead of a fault per page mid-copy.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    close(fd);
    return Result::Failed(Msg("cannot map peer memory of ", size, " bytes: ", std::strerror(err)));
  }
  out->reset(new SharedMemory(fd, static_cast<uint8_t*>(p), size));
  return Result::Ok();
}

SharedMemory::~SharedMemory() {
  munmap(data_, size_);
  close(fd_);
}

}  // namespace lldd
