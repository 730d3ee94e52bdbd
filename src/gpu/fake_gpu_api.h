// A GpuApi for tests on machines without a GPU: "device memory" is host
// memory in memfds (so VMM fds and IPC handles really cross processes),
// streams run their work at once unless stalled (or, with a copy rate, on
// a device thread of their own at that rate, as a GPU runs behind its
// caller), and the kernel launch refuses addresses a real GPU could not
// reach (host memory that was not registered or pinned), so tests catch a
// missing HostRegister. The kernel honours its cancel flag per run, as the
// real one does per thread block.
#ifndef LLM_DATADIST_SRC_GPU_FAKE_GPU_API_H_
#define LLM_DATADIST_SRC_GPU_FAKE_GPU_API_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "gpu/gpu_api.h"

namespace lldd {

class FakeGpuApi final : public GpuApi {
 public:
  explicit FakeGpuApi(int devices = 1) : devices_(devices) {}
  ~FakeGpuApi() override;

  // While stalled, submitted work waits (events stay "not ready").
  void Stall(bool stalled);
  // Non-zero: submitted work runs later, on a device thread, taking
  // bytes / rate seconds per copy (kernel runs one at a time). Zero: at once.
  void SetCopyRate(uint64_t bytes_per_second);

  // Counters.
  std::atomic<int> launches{0};
  std::atomic<int> memcpys{0};
  std::atomic<int> vmm_imports{0};
  std::atomic<int> vmm_unmaps{0};
  std::atomic<int> ipc_opens{0};
  std::atomic<int> ipc_closes{0};
  std::atomic<int> host_registers{0};
  std::atomic<int> host_unregisters{0};
  // Pinned allocations of exactly `pinned_size_counted` bytes (a test sets
  // it to its staging slab size, to tell slabs from the copier's tables).
  std::atomic<uint64_t> pinned_size_counted{0};
  std::atomic<int> pinned_allocs_of_size{0};
  std::atomic<uint64_t> last_launch_runs{0};
  std::atomic<uint64_t> runs_copied{0};
  std::atomic<uint64_t> runs_cancelled{0};
  int live_streams() const;
  // A fake device pointer of `bytes` from cudaMalloc (IPC-shareable).
  void* Malloc(uint64_t bytes);
  void Free(void* p);

  bool Available(std::string* reason) const override;
  int DeviceCount() const override { return devices_; }
  Result SetDevice(int device) override;
  Result GetDevice(int* device) override;
  bool VmmSupported(int device, std::string* reason) override;
  Result PointerInfo(const void* p, GpuPointerInfo* out) override;
  Result EnablePeerAccess(int device, int peer) override;
  Result VmmAllocate(int device, uint64_t bytes, GpuVmmBuffer* out) override;
  void VmmFree(GpuVmmBuffer* buffer) override;
  Result VmmImport(int fd, uint64_t size, int device, GpuVmmBuffer* out) override;
  void VmmUnmap(GpuVmmBuffer* buffer) override;
  Result IpcGetHandle(void* base, GpuIpcHandle* out) override;
  Result IpcOpen(const GpuIpcHandle& handle, int device, void** out) override;
  Result IpcClose(void* p) override;
  Result HostRegister(void* p, uint64_t bytes) override;
  Result HostUnregister(void* p) override;
  Result HostAllocPinned(uint64_t bytes, void** out) override;
  void HostFreePinned(void* p) override;
  Result DeviceAlloc(uint64_t bytes, void** out) override;
  void DeviceFree(void* p) override;
  Result StreamCreate(GpuStream* out) override;
  void StreamDestroy(GpuStream stream) override;
  Result EventCreate(GpuEvent* out) override;
  void EventDestroy(GpuEvent event) override;
  Result EventRecord(GpuEvent event, GpuStream stream) override;
  Result EventQuery(GpuEvent event) override;
  Result MemcpyAsync(void* dst, const void* src, uint64_t bytes, GpuStream stream) override;
  Result LaunchCopyRuns(const GpuCopyRun* table, uint32_t count, const volatile uint32_t* cancel,
                        GpuStream stream) override;

 private:
  struct Range {
    uint64_t size = 0;
    int fd = -1;  // memfd behind device memory (-1: pinned or registered host)
    bool device = false;
    bool owned = false;  // we mapped it (munmap on free)
  };
  // Work runs with mu_ held; it may let go of it while "the GPU is busy".
  using Op = std::function<void(std::unique_lock<std::mutex>&)>;
  struct Stream {
    std::deque<Op> queued;
    uint64_t submitted = 0;
    uint64_t done = 0;
  };
  struct Event {
    Stream* stream = nullptr;
    uint64_t target = 0;
  };
  Result MapMemfd(int fd, uint64_t size, bool create, void** out);
  bool Reachable(uint64_t addr, uint64_t len) const;  // requires mu_
  void Enqueue(Stream* s, Op op, std::unique_lock<std::mutex>& lock);  // requires mu_
  void RunDeviceThread();
  void Busy(uint64_t bytes, std::unique_lock<std::mutex>& lock);  // requires mu_
  void* AddRange(void* p, Range r);

  const int devices_;
  mutable std::mutex mu_;
  bool stalled_ = false;
  uint64_t rate_ = 0;  // bytes per second; 0: work runs at once
  bool stopping_ = false;
  std::condition_variable work_;
  std::thread device_thread_;
  std::map<uint64_t, Range> ranges_;  // by start address
  std::set<Stream*> streams_;
  std::set<Event*> events_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_FAKE_GPU_API_H_
