// Unpredictable bytes from the kernel (getrandom), for identifiers a peer
// must not guess: instance and link ids, link secrets, socket names, tickets.
#ifndef LLM_DATADIST_SRC_COMMON_RANDOM_H_
#define LLM_DATADIST_SRC_COMMON_RANDOM_H_

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace lldd {

// Blocks only until the kernel's pool is first seeded (early boot).
inline void FillRandom(void* buffer, size_t size) {
  auto* p = static_cast<uint8_t*>(buffer);
  while (size > 0) {
    const ssize_t n = getrandom(p, size, 0);
    if (n < 0) continue;  // EINTR; getrandom has no other failure for these flags and sizes
    p += n;
    size -= static_cast<size_t>(n);
  }
}

inline uint64_t RandomU64() {
  uint64_t v = 0;
  FillRandom(&v, sizeof(v));
  return v;
}

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_RANDOM_H_
