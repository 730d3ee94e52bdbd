// memcpy of many ranges, spread over a few threads when the bytes are many.
//
// One thread rarely saturates memory bandwidth; splitting a large copy
// across cores gets closer. Small copies stay on the caller's thread, where
// waking helpers would cost more than it saves.
#ifndef LLM_DATADIST_SRC_MEMORY_PARALLEL_COPY_H_
#define LLM_DATADIST_SRC_MEMORY_PARALLEL_COPY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace lldd {

struct CopyTask {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t length = 0;
};

// Below this many bytes a copy runs on the calling thread alone.
constexpr size_t kParallelCopyThreshold = 8U << 20;

// Runs `jobs` on the copy threads (one on the caller) and returns when all
// are done; runs them one after another on the caller when the threads are
// busy with another caller's work.
void RunOnCopyThreads(std::vector<std::function<void()>>& jobs);
// How many threads RunOnCopyThreads spreads over (caller included).
unsigned CopyThreadCount();

// Copies every task; `max_threads` bounds the threads used (0: one per
// core, at most 64). Ranges must not overlap one another.
void ParallelCopy(const std::vector<CopyTask>& tasks, unsigned max_threads = 0);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_PARALLEL_COPY_H_
