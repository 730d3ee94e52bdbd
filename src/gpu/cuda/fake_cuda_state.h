// Internal to the fake CUDA runtime (fake_cuda_runtime.cc, fake_cuda_driver.cc):
// the memory it knows and its configuration, shared by the runtime and the
// driver entry points.
#ifndef LLM_DATADIST_SRC_GPU_CUDA_FAKE_CUDA_STATE_H_
#define LLM_DATADIST_SRC_GPU_CUDA_FAKE_CUDA_STATE_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "gpu/cuda/fake_cuda_runtime.h"

namespace lldd::fake_cuda::internal {

constexpr uint64_t kGranularity = 2U << 20;
constexpr uint64_t kAliasBit = uint64_t{1} << 62;  // device address of host memory: never dereferenceable
constexpr uint32_t kIpcMagic = 0xC0DA1BC0;

enum class Kind { kDevice, kPinned, kRegistered, kIpc, kVmm };

struct Range {
  uint64_t size = 0;
  Kind kind = Kind::kDevice;
  int device = 0;        // where the memory lives / whose context mapped it
  int fd = -1;           // memfd behind device memory
  std::set<int> access;  // VMM: devices given access (cuMemSetAccess)
};

struct State {
  std::mutex mu;
  Config config;
  cudaError_t sticky = cudaSuccess;
  bool stalled = false;
  int launches = 0;
  std::map<uint64_t, Range> ranges;            // by start address
  std::set<std::pair<int, int>> peer;          // (from, to)
  std::map<const void*, std::string> kernels;  // host stub -> device name
};

State& S();
// The range holding [a, a+len), or ranges.end(). Requires mu.
std::map<uint64_t, Range>::iterator Find(uint64_t a, uint64_t len = 1);
bool IsHost(Kind k);
bool ValidDevice(int d);
// A driver entry point by name (fake_cuda_driver.cc), or nullptr.
void* DriverEntryPoint(const std::string& name);

}  // namespace lldd::fake_cuda::internal

#endif  // LLM_DATADIST_SRC_GPU_CUDA_FAKE_CUDA_STATE_H_
