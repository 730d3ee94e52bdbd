// One object per process, for the process-wide thread pools.
//
// A forked child inherits the parent's memory but none of its threads: a
// pool object copied into the child counts workers that do not exist there
// (jobs queued for them would never run), and its mutexes may be locked by
// threads that are gone. So each process gets its own object: the first
// call in a process creates it, and a fork forgets it in the child, where
// the next call creates a fresh one. The parent's copy is abandoned in the
// child, never destroyed, as is every instance at exit (threads may still
// be using it during static destruction).
//
// Get() is thread-safe. T's constructor must not call Get() for the same T.
#ifndef LLM_DATADIST_SRC_COMMON_PER_PROCESS_H_
#define LLM_DATADIST_SRC_COMMON_PER_PROCESS_H_

#include <pthread.h>

#include <atomic>
#include <mutex>
#include <new>

namespace lldd {

template <typename T>
class PerProcess {
 public:
  static T& Get() {
    if (T* t = instance_.load(std::memory_order_acquire)) return *t;
    std::lock_guard<std::mutex> lock(creating_);
    T* t = instance_.load(std::memory_order_relaxed);
    if (t == nullptr) {
      if (!fork_handler_installed_) {
        pthread_atfork(nullptr, nullptr, &ForgetInChild);
        fork_handler_installed_ = true;
      }
      t = new T();
      instance_.store(t, std::memory_order_release);
    }
    return *t;
  }

 private:
  // Runs in the child, on its only thread, before fork() returns there.
  static void ForgetInChild() {
    instance_.store(nullptr, std::memory_order_relaxed);
    new (&creating_) std::mutex();  // a thread that no longer exists may have held it
  }

  static inline std::atomic<T*> instance_{nullptr};
  static inline std::mutex creating_;
  static inline bool fork_handler_installed_ = false;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_PER_PROCESS_H_
