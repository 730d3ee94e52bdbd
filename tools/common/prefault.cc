#include "common/prefault.h"

#include <chrono>
#include <cstring>

namespace lldd_tools {

double Prefault(const std::vector<uintptr_t>& tensor_addrs, size_t tensor_bytes) {
  const auto start = std::chrono::steady_clock::now();
  for (uintptr_t a : tensor_addrs) std::memset(reinterpret_cast<void*>(a), 0, tensor_bytes);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace lldd_tools
