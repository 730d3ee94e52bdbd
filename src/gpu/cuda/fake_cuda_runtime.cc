// The fake CUDA runtime (see fake_cuda_runtime.h). "Device memory" is host
// memory in memfds, so that IPC handles and VMM fds cross processes like the
// real ones; the copy kernel runs on the host, address by address checked
// against what a kernel on the stream's device may reach.
#include "gpu/cuda/fake_cuda_runtime.h"

#include <cuda.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "gpu/gpu_api.h"
#include "gpu/cuda/fake_cuda_state.h"

namespace lldd::fake_cuda {
namespace internal {

State& S() {
  static State* s = new State();  // used by static initialisers (kernel registration) and until exit
  return *s;
}
std::map<uint64_t, Range>::iterator Find(uint64_t a, uint64_t len) {
  auto& m = S().ranges;
  auto it = m.upper_bound(a);
  if (it == m.begin()) return m.end();
  --it;
  if (a - it->first >= it->second.size || len > it->second.size - (a - it->first)) return m.end();
  return it;
}
bool IsHost(Kind k) { return k == Kind::kPinned || k == Kind::kRegistered; }
bool ValidDevice(int d) { return d >= 0 && d < S().config.devices; }

}  // namespace internal
namespace {
using namespace internal;  // NOLINT: this file implements the runtime over that state

struct Stream {
  int device = 0;
  std::deque<std::function<cudaError_t()>> queued;
  uint64_t submitted = 0, done = 0;
};
struct Event {
  int device = 0;
  Stream* stream = nullptr;
  uint64_t target = 0;
  bool queried = false;
  cudaError_t error = cudaSuccess;
};
struct IpcWire {
  uint32_t magic;
  int32_t pid;
  int32_t fd;
  uint32_t pad;
  uint64_t size;
};
thread_local cudaError_t t_last = cudaSuccess;
thread_local int t_device = 0;

cudaError_t Fail(cudaError_t e) {
  t_last = e;
  return e;
}
#define FAKE_STICKY()                                    \
  do {                                                   \
    if (S().sticky != cudaSuccess) return Fail(S().sticky); \
  } while (0)

// Where a kernel on `device` may touch [a, a+len): the host address, or nullptr.
uint8_t* KernelReach(uint64_t a, uint64_t len, int device) {
  State& s = S();
  if ((a & kAliasBit) != 0) {
    auto it = Find(a & ~kAliasBit, len);
    if (it == s.ranges.end() || !IsHost(it->second.kind)) return nullptr;
    return reinterpret_cast<uint8_t*>(a & ~kAliasBit);
  }
  auto it = Find(a, len);
  if (it == s.ranges.end()) return nullptr;
  const Range& r = it->second;
  bool ok = false;
  switch (r.kind) {
    case Kind::kPinned:
    case Kind::kRegistered: ok = s.config.host_pointer_usable; break;
    case Kind::kVmm: ok = r.access.count(device) != 0; break;
    default: ok = r.device == device || s.peer.count({device, r.device}) != 0; break;
  }
  return ok ? reinterpret_cast<uint8_t*>(a) : nullptr;
}

void Enqueue(Stream* st, std::function<cudaError_t()> op) {
  st->queued.push_back(std::move(op));
  ++st->submitted;
}

// Runs queued work up to `target`; the first failure is sticky. Requires mu.
void RunUntil(Stream* st, uint64_t target) {
  while (st->done < target && !st->queued.empty()) {
    cudaError_t e = st->queued.front()();
    st->queued.pop_front();
    ++st->done;
    if (e != cudaSuccess && S().sticky == cudaSuccess) S().sticky = e;
  }
}

void* MapFd(int fd, uint64_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : p;
}


// The copy kernel (copy_kernel.cu), one block per run, on the host. Requires mu.
cudaError_t RunCopyKernel(const GpuCopyRun* table, uint32_t blocks, const volatile uint32_t* cancel, int device) {
  auto* t = reinterpret_cast<const uint8_t*>(
      KernelReach(reinterpret_cast<uint64_t>(table), uint64_t{blocks} * sizeof(GpuCopyRun), device));
  if (t == nullptr) return cudaErrorIllegalAddress;
  const volatile uint32_t* flag = nullptr;
  if (cancel != nullptr) {
    flag = reinterpret_cast<const volatile uint32_t*>(KernelReach(reinterpret_cast<uint64_t>(cancel), 4, device));
    if (flag == nullptr) return cudaErrorIllegalAddress;
  }
  for (uint32_t b = 0; b < blocks; ++b) {
    if (flag != nullptr && __atomic_load_n(flag, __ATOMIC_ACQUIRE) != 0) break;  // each block looks first
    GpuCopyRun run;
    std::memcpy(&run, t + b * sizeof(GpuCopyRun), sizeof(run));
    uint8_t* dst = KernelReach(run.dst, run.length, device);
    uint8_t* src = KernelReach(run.src, run.length, device);
    if (run.length != 0 && (dst == nullptr || src == nullptr)) return cudaErrorIllegalAddress;
    if (run.length != 0) std::memmove(dst, src, run.length);
  }
  return cudaSuccess;
}

}  // namespace

void Configure(const Config& config) {
  std::lock_guard<std::mutex> lock(S().mu);
  S().config = config;
  S().sticky = cudaSuccess;
  S().peer.clear();
}
cudaError_t StickyError() {
  std::lock_guard<std::mutex> lock(S().mu);
  return S().sticky;
}
void Stall(bool stalled) {
  std::lock_guard<std::mutex> lock(S().mu);
  S().stalled = stalled;
}
int KernelLaunches() {
  std::lock_guard<std::mutex> lock(S().mu);
  return S().launches;
}

}  // namespace lldd::fake_cuda

// --- the runtime API, as cuda_runtime_api.h declares it ---

using namespace lldd::fake_cuda;  // NOLINT: this file implements those C functions
using lldd::GpuCopyRun;

extern "C" {

const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "fake CUDA error"; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorHostMemoryAlreadyRegistered: return "cudaErrorHostMemoryAlreadyRegistered";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorDeviceUninitialized: return "cudaErrorDeviceUninitialized";
    default: return "cudaErrorFake";
  }
}
cudaError_t cudaGetLastError() {
  cudaError_t e = t_last;
  t_last = S().sticky;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last; }

cudaError_t cudaGetDeviceCount(int* count) {
  std::lock_guard<std::mutex> lock(S().mu);
  *count = S().config.devices;
  return S().config.devices == 0 ? Fail(cudaErrorNoDevice) : cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  FAKE_STICKY();
  if (!ValidDevice(device)) return Fail(cudaErrorInvalidDevice);
  t_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  FAKE_STICKY();
  *device = t_device;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  if (!ValidDevice(device)) return Fail(cudaErrorInvalidDevice);
  if (attr != cudaDevAttrCanUseHostPointerForRegisteredMem) return Fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(S().mu);
  *value = S().config.host_pointer_usable ? 1 : 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer) {
  if (!ValidDevice(device) || !ValidDevice(peer)) return Fail(cudaErrorInvalidDevice);
  *can = device != peer;
  return cudaSuccess;
}
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned int) {
  FAKE_STICKY();
  if (!ValidDevice(peer) || peer == t_device) return Fail(cudaErrorInvalidDevice);
  std::lock_guard<std::mutex> lock(S().mu);
  if (!S().peer.insert({t_device, peer}).second) return Fail(cudaErrorPeerAccessAlreadyEnabled);
  return cudaSuccess;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** fn, unsigned int, unsigned long long,
                                             cudaDriverEntryPointQueryResult* status) {
  *fn = nullptr;
  std::lock_guard<std::mutex> lock(S().mu);
  void* entry = DriverEntryPoint(symbol);
  if (entry == nullptr || S().config.missing_entry_points.count(symbol) != 0) {
    if (status != nullptr) *status = cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;  // as CUDA: the call succeeds, the status says not found
  }
  *fn = entry;
  if (status != nullptr) *status = cudaDriverEntryPointSuccess;
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* p) {
  FAKE_STICKY();
  *attr = cudaPointerAttributes{};
  attr->type = cudaMemoryTypeUnregistered;
  attr->device = -2;
  std::lock_guard<std::mutex> lock(S().mu);
  uint64_t a = reinterpret_cast<uint64_t>(p);
  auto it = Find(a);
  if (it == S().ranges.end()) return cudaSuccess;
  const Range& r = it->second;
  if (IsHost(r.kind)) {
    attr->type = cudaMemoryTypeHost;
    attr->hostPointer = const_cast<void*>(p);
    attr->devicePointer = reinterpret_cast<void*>(S().config.host_pointer_usable ? a : a | kAliasBit);
  } else {
    attr->type = cudaMemoryTypeDevice;
    attr->device = r.device < 0 ? t_device : r.device;
    attr->devicePointer = const_cast<void*>(p);
  }
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** out, size_t bytes) {
  FAKE_STICKY();
  int fd = memfd_create("fake-cuda-malloc", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    if (fd >= 0) ::close(fd);
    return Fail(cudaErrorMemoryAllocation);
  }
  void* p = MapFd(fd, bytes);
  if (p == nullptr) {
    ::close(fd);
    return Fail(cudaErrorMemoryAllocation);
  }
  std::lock_guard<std::mutex> lock(S().mu);
  Range r;
  r.size = bytes;
  r.kind = Kind::kDevice;
  r.device = t_device;
  r.fd = fd;
  S().ranges[reinterpret_cast<uint64_t>(p)] = r;
  *out = p;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = S().ranges.find(reinterpret_cast<uint64_t>(p));
  if (it == S().ranges.end() || it->second.kind != Kind::kDevice) return Fail(cudaErrorInvalidValue);
  munmap(p, it->second.size);
  ::close(it->second.fd);
  S().ranges.erase(it);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** out, size_t bytes, unsigned int) {
  FAKE_STICKY();
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return Fail(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(S().mu);
  Range r;
  r.size = bytes;
  r.kind = Kind::kPinned;
  S().ranges[reinterpret_cast<uint64_t>(p)] = r;
  *out = p;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = S().ranges.find(reinterpret_cast<uint64_t>(p));
  if (it == S().ranges.end() || it->second.kind != Kind::kPinned) return Fail(cudaErrorInvalidValue);
  munmap(p, it->second.size);
  S().ranges.erase(it);
  return cudaSuccess;
}
cudaError_t cudaHostRegister(void* p, size_t bytes, unsigned int) {
  FAKE_STICKY();
  std::lock_guard<std::mutex> lock(S().mu);
  uint64_t a = reinterpret_cast<uint64_t>(p);
  auto& m = S().ranges;
  auto next = m.lower_bound(a);
  if (next != m.end() && next->first < a + bytes) return Fail(cudaErrorHostMemoryAlreadyRegistered);
  if (next != m.begin() && std::prev(next)->first + std::prev(next)->second.size > a)
    return Fail(cudaErrorHostMemoryAlreadyRegistered);
  Range r;
  r.size = bytes;
  r.kind = Kind::kRegistered;
  m[a] = r;
  return cudaSuccess;
}
cudaError_t cudaHostUnregister(void* p) {
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = S().ranges.find(reinterpret_cast<uint64_t>(p));
  if (it == S().ranges.end() || it->second.kind != Kind::kRegistered) return Fail(cudaErrorHostMemoryNotRegistered);
  S().ranges.erase(it);
  return cudaSuccess;
}
cudaError_t cudaHostGetDevicePointer(void** out, void* host, unsigned int flags) {
  FAKE_STICKY();
  std::lock_guard<std::mutex> lock(S().mu);
  uint64_t a = reinterpret_cast<uint64_t>(host);
  auto it = Find(a);
  if (flags != 0 || it == S().ranges.end() || !IsHost(it->second.kind)) return Fail(cudaErrorInvalidValue);
  *out = reinterpret_cast<void*>(S().config.host_pointer_usable ? a : a | kAliasBit);
  return cudaSuccess;
}

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t* handle, void* p) {
  FAKE_STICKY();
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = S().ranges.find(reinterpret_cast<uint64_t>(p));
  if (it == S().ranges.end() || it->second.kind != Kind::kDevice) return Fail(cudaErrorInvalidValue);
  IpcWire w{kIpcMagic, static_cast<int32_t>(getpid()), it->second.fd, 0, it->second.size};
  std::memset(handle, 0, sizeof(*handle));
  std::memcpy(handle, &w, sizeof(w));
  return cudaSuccess;
}
cudaError_t cudaIpcOpenMemHandle(void** out, cudaIpcMemHandle_t handle, unsigned int) {
  FAKE_STICKY();
  IpcWire w;
  std::memcpy(&w, &handle, sizeof(w));
  if (w.magic != kIpcMagic) return Fail(cudaErrorInvalidValue);
  if (w.pid == getpid()) return Fail(cudaErrorDeviceUninitialized);  // CUDA refuses its own handles
  std::string path = "/proc/" + std::to_string(w.pid) + "/fd/" + std::to_string(w.fd);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Fail(cudaErrorMapBufferObjectFailed);
  void* p = MapFd(fd, w.size);
  ::close(fd);
  if (p == nullptr) return Fail(cudaErrorMapBufferObjectFailed);
  std::lock_guard<std::mutex> lock(S().mu);
  Range r;
  r.size = w.size;
  r.kind = Kind::kIpc;
  r.device = t_device;  // mapped into the current device's context
  S().ranges[reinterpret_cast<uint64_t>(p)] = r;
  *out = p;
  return cudaSuccess;
}
cudaError_t cudaIpcCloseMemHandle(void* p) {
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = S().ranges.find(reinterpret_cast<uint64_t>(p));
  if (it == S().ranges.end() || it->second.kind != Kind::kIpc) return Fail(cudaErrorInvalidValue);
  munmap(p, it->second.size);
  S().ranges.erase(it);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* out, unsigned int) {
  FAKE_STICKY();
  auto* s = new Stream();
  s->device = t_device;
  *out = reinterpret_cast<cudaStream_t>(s);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t st) {
  auto* s = reinterpret_cast<Stream*>(st);
  {
    std::lock_guard<std::mutex> lock(S().mu);
    RunUntil(s, s->submitted);  // CUDA finishes queued work first
  }
  delete s;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* out, unsigned int) {
  FAKE_STICKY();
  auto* e = new Event();
  e->device = t_device;
  *out = reinterpret_cast<cudaEvent_t>(e);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t ev) {
  delete reinterpret_cast<Event*>(ev);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t st) {
  FAKE_STICKY();
  auto* e = reinterpret_cast<Event*>(ev);
  auto* s = reinterpret_cast<Stream*>(st);
  if (s == nullptr || e->device != s->device) return Fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lock(S().mu);
  e->stream = s;
  e->target = s->submitted;
  e->queried = false;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t ev) {
  FAKE_STICKY();
  auto* e = reinterpret_cast<Event*>(ev);
  std::lock_guard<std::mutex> lock(S().mu);
  if (e->stream == nullptr) return cudaSuccess;
  if (e->stream->done >= e->target) return cudaSuccess;
  if (!e->queried || S().stalled) {
    e->queried = true;
    return Fail(cudaErrorNotReady);  // recorded as the thread's last error, as CUDA does
  }
  RunUntil(e->stream, e->target);
  return S().sticky != cudaSuccess ? Fail(S().sticky) : cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t st) {
  FAKE_STICKY();
  if (kind != cudaMemcpyDefault) return Fail(cudaErrorInvalidValue);
  auto* s = reinterpret_cast<Stream*>(st);
  std::lock_guard<std::mutex> lock(S().mu);
  // Unified addressing: host and device addresses alike (a device alias of
  // mapped host memory included).
  Enqueue(s, [dst, src, bytes] {
    std::memmove(reinterpret_cast<void*>(reinterpret_cast<uint64_t>(dst) & ~kAliasBit),
                 reinterpret_cast<const void*>(reinterpret_cast<uint64_t>(src) & ~kAliasBit), bytes);
    return cudaSuccess;
  });
  return cudaSuccess;
}

// Kernel launches. nvcc's host code registers each kernel's stub with its
// name, and `<<<>>>` pushes a configuration that the stub pops before it
// calls cudaLaunchKernel.
void** __cudaRegisterFatBinary(void*) {
  static void* handle = nullptr;
  return &handle;
}
void __cudaRegisterFatBinaryEnd(void**) {}
void __cudaUnregisterFatBinary(void**) {}
void __cudaRegisterFunction(void**, const char* host_fun, char*, const char* device_name, int, uint3*, uint3*, dim3*,
                            dim3*, int*) {
  std::lock_guard<std::mutex> lock(S().mu);
  S().kernels[host_fun] = device_name;
}
namespace {
thread_local dim3 t_grid, t_block;
thread_local size_t t_shared = 0;
thread_local cudaStream_t t_stream = nullptr;
}  // namespace
unsigned __cudaPushCallConfiguration(dim3 grid, dim3 block, size_t shared, struct CUstream_st* stream) {
  t_grid = grid;
  t_block = block;
  t_shared = shared;
  t_stream = stream;
  return 0;
}
cudaError_t __cudaPopCallConfiguration(dim3* grid, dim3* block, size_t* shared, void* stream) {
  *grid = t_grid;
  *block = t_block;
  *shared = t_shared;
  *static_cast<cudaStream_t*>(stream) = t_stream;
  return cudaSuccess;
}
cudaError_t cudaLaunchKernel(const void* func, dim3 grid, dim3 block, void** args, size_t, cudaStream_t st) {
  FAKE_STICKY();
  auto* s = reinterpret_cast<Stream*>(st);
  std::lock_guard<std::mutex> lock(S().mu);
  auto k = S().kernels.find(func);
  if (k == S().kernels.end() || k->second.find("CopyRunsKernel") == std::string::npos)
    return Fail(cudaErrorInvalidDeviceFunction);
  if (s == nullptr || s->device != t_device) return Fail(cudaErrorInvalidResourceHandle);  // another device's stream
  if (grid.x == 0 || block.x == 0 || block.x > 1024) return Fail(cudaErrorInvalidConfiguration);
  const GpuCopyRun* table = *static_cast<const GpuCopyRun* const*>(args[0]);
  const volatile uint32_t* cancel = *static_cast<const volatile uint32_t* const*>(args[1]);
  uint32_t blocks = grid.x;
  int device = s->device;
  ++S().launches;
  Enqueue(s, [table, blocks, cancel, device] {
    return RunCopyKernel(table, blocks, cancel, device);
  });
  return cudaSuccess;
}

// CUDA 13's `<<<>>>` stubs look the kernel up once, then launch it by handle.
cudaError_t __cudaGetKernel(cudaKernel_t* out, const void* host_fun) {
  *out = reinterpret_cast<cudaKernel_t>(const_cast<void*>(host_fun));
  return cudaSuccess;
}
cudaError_t __cudaLaunchKernel(cudaKernel_t kernel, dim3 grid, dim3 block, void** args, size_t shared,
                               cudaStream_t st) {
  return cudaLaunchKernel(reinterpret_cast<const void*>(kernel), grid, block, args, shared, st);
}

}  // extern "C"
