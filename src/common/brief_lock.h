// Locking a mutex whose holders keep it for well under a microsecond and
// whose takers run on other cores: spinning a little on try_lock first
// turns most contended takes into a few hundred nanoseconds of waiting
// rather than a futex sleep and wake-up (microseconds each, on both sides).
// A holder that was descheduled is still waited for by sleeping.
#ifndef LLM_DATADIST_SRC_COMMON_BRIEF_LOCK_H_
#define LLM_DATADIST_SRC_COMMON_BRIEF_LOCK_H_

#include <mutex>

namespace lldd {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

inline void LockBriefly(std::mutex& mu) {
  constexpr int kSpins = 100;
  for (int i = 0; i < kSpins; ++i) {
    if (mu.try_lock()) return;
    CpuRelax();
  }
  mu.lock();
}

// std::unique_lock taken with LockBriefly.
inline std::unique_lock<std::mutex> BriefLock(std::mutex& mu) {
  LockBriefly(mu);
  return std::unique_lock<std::mutex>(mu, std::adopt_lock);
}

// Takes `lock`'s mutex again (after lock.unlock()) with LockBriefly.
inline void RelockBriefly(std::unique_lock<std::mutex>& lock) {
  std::mutex* mu = lock.release();  // not owned now: nothing is unlocked
  LockBriefly(*mu);
  lock = std::unique_lock<std::mutex>(*mu, std::adopt_lock);
}

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_BRIEF_LOCK_H_
