#include "memory/line_pool.h"

#include <new>
#include <vector>

#include "common/per_thread.h"

namespace lldd {
namespace {

constexpr size_t kPooledLines = 4;   // blocks of 1..4 lines are kept
constexpr size_t kKeptPerSize = 1024;  // per thread: a few windows of requests in flight

size_t LinesOf(size_t bytes) { return bytes == 0 ? 1 : (bytes + kCacheLine - 1) / kCacheLine; }

void* NewBlock(size_t lines) { return ::operator new(lines * kCacheLine, std::align_val_t{kCacheLine}); }
void DeleteBlock(void* block) { ::operator delete(block, std::align_val_t{kCacheLine}); }

struct Pool {
  std::vector<void*> free[kPooledLines];  // by lines - 1
  ~Pool() {
    for (auto& list : free)
      for (void* block : list) DeleteBlock(block);
  }
};

// Null on a thread whose pool is gone (per_thread.h): the allocator's then.
Pool* ThisThreadsPool() { return ThisThreads<Pool>(); }

}  // namespace

void* AllocateLines(size_t bytes) {
  const size_t lines = LinesOf(bytes);
  if (kLinePoolKeepsBlocks && lines <= kPooledLines) {
    if (Pool* pool = ThisThreadsPool(); pool != nullptr && !pool->free[lines - 1].empty()) {
      void* block = pool->free[lines - 1].back();
      pool->free[lines - 1].pop_back();
      return block;
    }
  }
  return NewBlock(lines);
}

void FreeLines(void* block, size_t bytes) {
  if (block == nullptr) return;
  const size_t lines = LinesOf(bytes);
  if (kLinePoolKeepsBlocks && lines <= kPooledLines) {
    Pool* pool = ThisThreadsPool();
    if (pool != nullptr && pool->free[lines - 1].size() < kKeptPerSize) {
      pool->free[lines - 1].push_back(block);
      return;
    }
  }
  DeleteBlock(block);
}

}  // namespace lldd
