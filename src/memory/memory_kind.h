// Which kind of memory a region is, as transports see it: they declare the
// kinds they can move (transport/transport.h) and the engine picks a path
// per transfer from the kinds of both sides.
#ifndef LLM_DATADIST_SRC_MEMORY_MEMORY_KIND_H_
#define LLM_DATADIST_SRC_MEMORY_MEMORY_KIND_H_

#include <cstdint>

namespace lldd {

enum MemoryKind : uint32_t {
  kHostAllocated = 1U << 0,   // host memory the library allocated (shareable)
  kHostRegistered = 1U << 1,  // host memory the user registered
  kDeviceMemory = 1U << 2,    // GPU memory (allocated or registered)
};
constexpr uint32_t kAnyHostMemory = kHostAllocated | kHostRegistered;
constexpr uint32_t kAnyMemory = kAnyHostMemory | kDeviceMemory;

inline const char* MemoryKindName(uint32_t kind) {
  switch (kind) {
    case kHostAllocated: return "allocated host memory";
    case kHostRegistered: return "registered host memory";
    case kDeviceMemory: return "GPU memory";
    default: return "memory";
  }
}

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_MEMORY_MEMORY_KIND_H_
