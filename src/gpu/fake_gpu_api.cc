#include "gpu/fake_gpu_api.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace lldd {
namespace {
constexpr uint64_t kGranularity = 64U << 10;
struct FakeIpc {
  uint32_t magic;
  int32_t pid;
  int32_t fd;
  uint32_t pad;
  uint64_t size;
};
constexpr uint32_t kIpcMagic = 0xFA6E1BC0;
}  // namespace

FakeGpuApi::~FakeGpuApi() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  if (device_thread_.joinable()) device_thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [addr, r] : ranges_) {
    if (r.owned) munmap(reinterpret_cast<void*>(addr), r.size);
    if (r.fd >= 0) ::close(r.fd);
  }
  for (Stream* s : streams_) delete s;
  for (Event* e : events_) delete e;
}

void FakeGpuApi::Stall(bool stalled) {
  std::unique_lock<std::mutex> lock(mu_);
  stalled_ = stalled;
  if (stalled) return;
  if (rate_ != 0) {
    work_.notify_all();
    return;
  }
  for (Stream* s : streams_) {
    while (!s->queued.empty()) {
      s->queued.front()(lock);
      s->queued.pop_front();
      ++s->done;
    }
  }
}

void FakeGpuApi::SetCopyRate(uint64_t bytes_per_second) {
  std::lock_guard<std::mutex> lock(mu_);
  rate_ = bytes_per_second;
  if (rate_ != 0 && !device_thread_.joinable()) device_thread_ = std::thread([this] { RunDeviceThread(); });
  work_.notify_all();
}

// One engine for every stream, oldest stream first: enough to make work
// finish after the call that queued it, which is what the tests need.
void FakeGpuApi::RunDeviceThread() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    Stream* next = nullptr;
    if (!stalled_ && rate_ != 0)
      for (Stream* s : streams_)
        if (!s->queued.empty()) next = s;
    if (next == nullptr) {
      work_.wait(lock);
      continue;
    }
    Op op = next->queued.front();
    op(lock);
    if (streams_.count(next) != 0 && !next->queued.empty()) {
      next->queued.pop_front();
      ++next->done;
    }
  }
}

void FakeGpuApi::Busy(uint64_t bytes, std::unique_lock<std::mutex>& lock) {
  if (rate_ == 0) return;
  auto ns = std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(bytes) * 1e9 / static_cast<double>(rate_)));
  lock.unlock();
  std::this_thread::sleep_for(ns);
  lock.lock();
}

int FakeGpuApi::live_streams() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(streams_.size());
}

bool FakeGpuApi::Available(std::string* reason) const {
  if (reason != nullptr) reason->clear();
  return devices_ > 0;
}

namespace {
thread_local int t_current_device = 0;  // per thread, as in CUDA
}  // namespace

Result FakeGpuApi::SetDevice(int device) {
  if (device < 0 || device >= devices_) return Result::ParamInvalid(Msg("GPU ", device, " does not exist"));
  t_current_device = device;
  return Result::Ok();
}

Result FakeGpuApi::GetDevice(int* device) {
  *device = t_current_device;
  return Result::Ok();
}

Result FakeGpuApi::EnablePeerAccess(int device, int peer) {
  if (device < 0 || device >= devices_ || peer < 0 || peer >= devices_)
    return Result::ParamInvalid(Msg("GPU ", device, " or ", peer, " does not exist"));
  return Result::Ok();
}

bool FakeGpuApi::VmmSupported(int device, std::string* reason) {
  if (reason != nullptr) *reason = device < devices_ ? "" : "no such GPU";
  return device >= 0 && device < devices_;
}

void* FakeGpuApi::AddRange(void* p, Range r) {
  std::lock_guard<std::mutex> lock(mu_);
  ranges_[reinterpret_cast<uint64_t>(p)] = r;
  return p;
}

Result FakeGpuApi::MapMemfd(int fd, uint64_t size, bool create, void** out) {
  if (create && ftruncate(fd, static_cast<off_t>(size)) != 0) return Result::OutOfMemory("fake GPU: ftruncate failed");
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Result::Failed(Msg("fake GPU: mmap failed: ", std::strerror(errno)));
  *out = p;
  return Result::Ok();
}

Result FakeGpuApi::PointerInfo(const void* p, GpuPointerInfo* out) {
  *out = GpuPointerInfo{};
  uint64_t a = reinterpret_cast<uint64_t>(p);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ranges_.upper_bound(a);
  if (it == ranges_.begin()) return Result::Ok();
  --it;
  if (!it->second.device || a >= it->first + it->second.size) return Result::Ok();
  out->device = true;
  out->device_id = 0;
  out->base = it->first;
  out->size = it->second.size;
  return Result::Ok();
}

Result FakeGpuApi::VmmAllocate(int device, uint64_t bytes, GpuVmmBuffer* out) {
  LDD_RETURN_IF_ERROR(SetDevice(device));
  uint64_t size = (std::max<uint64_t>(bytes, 1) + kGranularity - 1) / kGranularity * kGranularity;
  int fd = memfd_create("fake-gpu-vmm", MFD_CLOEXEC);
  if (fd < 0) return Result::Failed("fake GPU: memfd_create failed");
  void* p = nullptr;
  Result r = MapMemfd(fd, size, true, &p);
  if (!r.ok()) {
    ::close(fd);
    return r;
  }
  int exported = dup(fd);
  AddRange(p, Range{size, fd, true, true});
  *out = GpuVmmBuffer{p, size, reinterpret_cast<uint64_t>(p), exported, device};
  return Result::Ok();
}

void FakeGpuApi::VmmFree(GpuVmmBuffer* b) {
  VmmUnmap(b);
  if (b->fd >= 0) ::close(b->fd);
  b->fd = -1;
}

Result FakeGpuApi::VmmImport(int fd, uint64_t size, int device, GpuVmmBuffer* out) {
  LDD_RETURN_IF_ERROR(SetDevice(device));
  void* p = nullptr;
  LDD_RETURN_IF_ERROR(MapMemfd(fd, size, false, &p));
  AddRange(p, Range{size, -1, true, true});
  ++vmm_imports;
  *out = GpuVmmBuffer{p, size, reinterpret_cast<uint64_t>(p), -1, device};
  return Result::Ok();
}

void FakeGpuApi::VmmUnmap(GpuVmmBuffer* b) {
  if (b->ptr == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ranges_.find(reinterpret_cast<uint64_t>(b->ptr));
    if (it != ranges_.end()) {
      if (it->second.fd >= 0) ::close(it->second.fd);
      ranges_.erase(it);
    }
  }
  munmap(b->ptr, b->size);
  ++vmm_unmaps;
  b->ptr = nullptr;
  b->handle = 0;
}

void* FakeGpuApi::Malloc(uint64_t bytes) {
  GpuVmmBuffer b;
  if (!VmmAllocate(0, bytes, &b).ok()) return nullptr;
  ::close(b.fd);
  return b.ptr;
}

void FakeGpuApi::Free(void* p) {
  uint64_t size = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ranges_.find(reinterpret_cast<uint64_t>(p));
    if (it == ranges_.end()) return;
    size = it->second.size;
  }
  GpuVmmBuffer b{p, size, 0, -1, 0};
  VmmUnmap(&b);
  --vmm_unmaps;
}

Result FakeGpuApi::IpcGetHandle(void* base, GpuIpcHandle* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ranges_.find(reinterpret_cast<uint64_t>(base));
  if (it == ranges_.end() || it->second.fd < 0)
    return Result::ParamInvalid("fake GPU: cudaIpcGetMemHandle needs the base of a cudaMalloc allocation");
  FakeIpc h{kIpcMagic, static_cast<int32_t>(getpid()), it->second.fd, 0, it->second.size};
  out->fill(0);
  std::memcpy(out->data(), &h, sizeof(h));
  return Result::Ok();
}

Result FakeGpuApi::IpcOpen(const GpuIpcHandle& handle, int device, void** out) {
  if (device < 0 || device >= devices_) return Result::ParamInvalid(Msg("GPU ", device, " does not exist"));
  FakeIpc h{};
  std::memcpy(&h, handle.data(), sizeof(h));
  if (h.magic != kIpcMagic) return Result::Failed("fake GPU: not an IPC handle");
  int fd = open(Msg("/proc/", h.pid, "/fd/", h.fd).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Result::Failed(Msg("fake GPU: cannot open the peer's memory: ", std::strerror(errno)));
  void* p = nullptr;
  Result r = MapMemfd(fd, h.size, false, &p);
  ::close(fd);
  LDD_RETURN_IF_ERROR(r);
  AddRange(p, Range{h.size, -1, true, true});
  ++ipc_opens;
  *out = p;
  return Result::Ok();
}

Result FakeGpuApi::IpcClose(void* p) {
  uint64_t size = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ranges_.find(reinterpret_cast<uint64_t>(p));
    if (it == ranges_.end()) return Result::ParamInvalid("fake GPU: not an opened IPC mapping");
    size = it->second.size;
    ranges_.erase(it);
  }
  munmap(p, size);
  ++ipc_closes;
  return Result::Ok();
}

Result FakeGpuApi::HostRegister(void* p, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t a = reinterpret_cast<uint64_t>(p);
  if (ranges_.count(a) != 0) return Result::Failed("fake GPU: cudaErrorHostMemoryAlreadyRegistered");
  ranges_[a] = Range{bytes, -1, false, false};
  ++host_registers;
  return Result::Ok();
}

Result FakeGpuApi::HostUnregister(void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ranges_.find(reinterpret_cast<uint64_t>(p));
  if (it == ranges_.end() || it->second.device) return Result::Failed("fake GPU: cudaErrorHostMemoryNotRegistered");
  ranges_.erase(it);
  ++host_unregisters;
  return Result::Ok();
}

Result FakeGpuApi::HostAllocPinned(uint64_t bytes, void** out) {
  void* p = std::aligned_alloc(4096, (std::max<uint64_t>(bytes, 1) + 4095) / 4096 * 4096);
  if (p == nullptr) return Result::OutOfMemory("fake GPU: pinned allocation failed");
  AddRange(p, Range{bytes, -1, false, false});
  if (bytes == pinned_size_counted.load()) ++pinned_allocs_of_size;
  *out = p;
  return Result::Ok();
}

void FakeGpuApi::HostFreePinned(void* p) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ranges_.erase(reinterpret_cast<uint64_t>(p));
  }
  std::free(p);
}

Result FakeGpuApi::DeviceAlloc(uint64_t bytes, void** out) {
  void* p = std::aligned_alloc(256, (std::max<uint64_t>(bytes, 1) + 255) / 256 * 256);
  if (p == nullptr) return Result::OutOfMemory("fake GPU: allocation failed");
  AddRange(p, Range{bytes, -1, true, false});
  *out = p;
  return Result::Ok();
}

void FakeGpuApi::DeviceFree(void* p) { HostFreePinned(p); }

Result FakeGpuApi::StreamCreate(GpuStream* out) {
  std::lock_guard<std::mutex> lock(mu_);
  Stream* s = new Stream();
  streams_.insert(s);
  *out = s;
  return Result::Ok();
}

void FakeGpuApi::StreamDestroy(GpuStream stream) {
  std::lock_guard<std::mutex> lock(mu_);
  Stream* s = static_cast<Stream*>(stream);
  // Like CUDA: queued work still runs (here: is dropped, as no test relies on it).
  if (streams_.erase(s) != 0) delete s;
}

Result FakeGpuApi::EventCreate(GpuEvent* out) {
  std::lock_guard<std::mutex> lock(mu_);
  Event* e = new Event();
  events_.insert(e);
  *out = e;
  return Result::Ok();
}

void FakeGpuApi::EventDestroy(GpuEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  Event* e = static_cast<Event*>(event);
  if (events_.erase(e) != 0) delete e;
}

Result FakeGpuApi::EventRecord(GpuEvent event, GpuStream stream) {
  std::lock_guard<std::mutex> lock(mu_);
  Event* e = static_cast<Event*>(event);
  e->stream = static_cast<Stream*>(stream);
  e->target = e->stream->submitted;
  return Result::Ok();
}

Result FakeGpuApi::EventQuery(GpuEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  Event* e = static_cast<Event*>(event);
  if (e->stream == nullptr || streams_.count(e->stream) == 0 || e->stream->done >= e->target) return Result::Ok();
  return Result::Timeout("fake GPU work still queued");
}

void FakeGpuApi::Enqueue(Stream* s, Op op, std::unique_lock<std::mutex>& lock) {
  ++s->submitted;
  if (rate_ != 0 || stalled_ || !s->queued.empty()) {
    s->queued.push_back(std::move(op));
    work_.notify_all();
    return;
  }
  op(lock);
  ++s->done;
}

bool FakeGpuApi::Reachable(uint64_t addr, uint64_t len) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return false;
  --it;
  return addr >= it->first && len <= it->second.size && addr - it->first <= it->second.size - len;
}

Result FakeGpuApi::MemcpyAsync(void* dst, const void* src, uint64_t bytes, GpuStream stream) {
  std::unique_lock<std::mutex> lock(mu_);
  ++memcpys;
  Enqueue(
      static_cast<Stream*>(stream),
      [this, dst, src, bytes](std::unique_lock<std::mutex>& l) {
        Busy(bytes, l);
        std::memcpy(dst, src, bytes);
      },
      lock);
  return Result::Ok();
}

Result FakeGpuApi::LaunchCopyRuns(const GpuCopyRun* table, uint32_t count, const volatile uint32_t* cancel,
                                  GpuStream stream) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!Reachable(reinterpret_cast<uint64_t>(table), uint64_t{count} * sizeof(GpuCopyRun)))
    return Result::Failed("fake GPU: the copy table is not in memory the GPU can read");
  if (cancel != nullptr && !Reachable(reinterpret_cast<uint64_t>(cancel), sizeof(*cancel)))
    return Result::Failed("fake GPU: the cancel flag is not in memory the GPU can read");
  ++launches;
  last_launch_runs = count;
  // The kernel reads its table when it runs (as the GPU would), and each
  // run (a thread block) looks at the cancel flag before it starts.
  Enqueue(static_cast<Stream*>(stream), [this, table, count, cancel](std::unique_lock<std::mutex>& l) {
    for (uint32_t i = 0; i < count; ++i) {
      if (cancel != nullptr && __atomic_load_n(cancel, __ATOMIC_ACQUIRE) != 0) {
        runs_cancelled += count - i;
        return;
      }
      const GpuCopyRun run = table[i];
      if (!Reachable(run.src, run.length) || !Reachable(run.dst, run.length)) {
        // A real GPU would fault (cudaErrorIllegalAddress); make tests fail loudly.
        std::fprintf(stderr, "fake GPU: kernel touched unreachable memory %#llx <- %#llx (+%llu)\n",
                     static_cast<unsigned long long>(run.dst), static_cast<unsigned long long>(run.src),
                     static_cast<unsigned long long>(run.length));
        std::abort();
      }
      Busy(run.length, l);
      std::memcpy(reinterpret_cast<void*>(run.dst), reinterpret_cast<const void*>(run.src), run.length);
      ++runs_copied;
    }
  }, lock);
  return Result::Ok();
}

}  // namespace lldd
