// A stand-in for the vendor's <acl/acl.h>, for tests only (never
// installed): just what the vendor's HIXL examples call, on host memory.
// A user of our library on NVIDIA or host memory supplies their own; this
// one shows that nothing more than these few calls is needed.
#ifndef LLM_DATADIST_TESTS_INSTALL_ACL_STUB_ACL_ACL_H_
#define LLM_DATADIST_TESTS_INSTALL_ACL_STUB_ACL_ACL_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

typedef int aclError;
constexpr aclError ACL_ERROR_NONE = 0;
constexpr aclError ACL_ERROR_BAD_ARGUMENT = 100000;

typedef enum aclrtMemMallocPolicy {
  ACL_MEM_MALLOC_HUGE_FIRST,
  ACL_MEM_MALLOC_HUGE_ONLY,
  ACL_MEM_MALLOC_NORMAL_ONLY,
} aclrtMemMallocPolicy;

typedef enum aclrtMemcpyKind {
  ACL_MEMCPY_HOST_TO_HOST,
  ACL_MEMCPY_HOST_TO_DEVICE,
  ACL_MEMCPY_DEVICE_TO_HOST,
  ACL_MEMCPY_DEVICE_TO_DEVICE,
} aclrtMemcpyKind;

inline aclError aclrtSetDevice(int32_t) { return ACL_ERROR_NONE; }
inline aclError aclrtResetDevice(int32_t) { return ACL_ERROR_NONE; }

inline aclError aclrtMalloc(void** ptr, size_t size, aclrtMemMallocPolicy) {
  return ptr != nullptr && size != 0 && posix_memalign(ptr, 4096, size) == 0 ? ACL_ERROR_NONE : ACL_ERROR_BAD_ARGUMENT;
}
inline aclError aclrtFree(void* ptr) {
  std::free(ptr);
  return ACL_ERROR_NONE;
}
inline aclError aclrtMallocHost(void** ptr, size_t size) { return aclrtMalloc(ptr, size, ACL_MEM_MALLOC_NORMAL_ONLY); }
inline aclError aclrtFreeHost(void* ptr) { return aclrtFree(ptr); }

inline aclError aclrtMemcpy(void* dst, size_t dest_max, const void* src, size_t count, aclrtMemcpyKind) {
  if (dst == nullptr || src == nullptr || count > dest_max) return ACL_ERROR_BAD_ARGUMENT;
  std::memmove(dst, src, count);
  return ACL_ERROR_NONE;
}

inline const char* aclGetRecentErrMsg() { return nullptr; }

#endif  // LLM_DATADIST_TESTS_INSTALL_ACL_STUB_ACL_ACL_H_
