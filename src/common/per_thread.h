// One T per thread, for per-thread caches of spare storage.
//
// The T lives until its thread ends, but objects may still be freed on the
// thread after that (thread-local and static objects destroyed later, such
// as a queue holding jobs): ThisThreads<T>() is null from then on, and the
// caller hands such objects to the allocator instead. The flag that says
// so is trivially destructible, so it outlives the T.
#ifndef LLM_DATADIST_SRC_COMMON_PER_THREAD_H_
#define LLM_DATADIST_SRC_COMMON_PER_THREAD_H_

namespace lldd {

template <typename T>
T* ThisThreads() {
  thread_local bool gone = false;
  struct Holder {
    T value;
    ~Holder() { gone = true; }
  };
  thread_local Holder holder;
  return gone ? nullptr : &holder.value;
}

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_PER_THREAD_H_
