// Cache-line-aligned memory for the small objects every request makes and
// passes between threads (the transfer queue's Request, a one-op OpsJob).
//
// Why not plain new: a caller streaming small requests frees them in
// bursts as large as its window (64 and more), which overflows the
// allocator's per-thread cache (7 blocks a size) into its shared bins,
// whose locked instructions each wait for every store before them; and a
// 16-byte-aligned block of 2-3 lines' worth spans one line more, which the
// worker reads and the caller's core must then take back on reuse.
//
// Blocks are whole cache lines, kept per thread in a bounded free list per
// size: a block freed on a thread other than its allocator's joins that
// thread's list (blocks of a size are interchangeable). Under the address
// and thread sanitizers every block comes from and returns to the
// allocator, so they still see each object's lifetime. Thread-safe.
#ifndef LLM_DATADIST_SRC_MEMORY_LINE_POOL_H_
#define LLM_DATADIST_SRC_MEMORY_LINE_POOL_H_

#include <cstddef>

namespace lldd {

constexpr size_t kCacheLine = 64;

// Whether freed blocks are kept for reuse (not under the sanitizers).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kLinePoolKeepsBlocks = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kLinePoolKeepsBlocks = false;
#else
constexpr bool kLinePoolKeepsBlocks = true;
#endif
#else
constexpr bool kLinePoolKeepsBlocks = true;
#endif

// At least `bytes`, aligned to a cache line; never null (std::bad_alloc).
void* AllocateLines(size_t bytes);
// A block from AllocateLines of the same `bytes`.
void FreeLines(void* block, size_t bytes);

// For std::allocate_shared and containers.
template <typename T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <typename U>
  LineAllocator(const LineAllocator<U>&) {}  // NOLINT: rebinding converts implicitly
  T* allocate(size_t n) { return static_cast<T*>(AllocateLines(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { FreeLines(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const LineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const LineAllocator<U>&) const { return false; }
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_LINE_POOL_H_
