// The real GPU layer. The CUDA runtime is linked statically and loads the
// driver (libcuda.so.1) on first use; driver-API calls (VMM, address
// ranges) come from cudaGetDriverEntryPointByVersion, never from linking
// libcuda, so the library loads and runs where no driver is installed.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <vector>

#include "common/logging.h"
#include "gpu/cuda/copy_kernel.h"
#include "gpu/cuda/cuda_gpu_api.h"
#include "gpu/gpu_api.h"

namespace lldd {
namespace {

// A failed call (and cudaEventQuery's cudaErrorNotReady) is also recorded as
// the thread's last error, which the application's next launch check
// (cudaGetLastError after its own kernel) would take for its own failure:
// every failure we report or tolerate is cleared here.
void ClearLastError() { (void)cudaGetLastError(); }
// A call whose failure changes nothing for us (a release, a restore).
void Tolerate(cudaError_t e) {
  if (e != cudaSuccess) ClearLastError();
}

Result CudaFailed(cudaError_t e, const char* what) {
  ClearLastError();
  if (e == cudaErrorMemoryAllocation) return Result::OutOfMemory(Msg(what, ": ", cudaGetErrorString(e)));
  return Result::Failed(Msg(what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}
#define LDD_CUDA(call)                                         \
  do {                                                         \
    cudaError_t ldd_e_ = (call);                               \
    if (ldd_e_ != cudaSuccess) return CudaFailed(ldd_e_, #call); \
  } while (0)

struct Driver {
  PFN_cuGetErrorName_v6000 GetErrorName = nullptr;
  PFN_cuDeviceGet_v2000 DeviceGet = nullptr;
  PFN_cuDeviceGetAttribute_v2000 DeviceGetAttribute = nullptr;
  PFN_cuMemCreate_v10020 MemCreate = nullptr;
  PFN_cuMemRelease_v10020 MemRelease = nullptr;
  PFN_cuMemExportToShareableHandle_v10020 MemExport = nullptr;
  PFN_cuMemImportFromShareableHandle_v10020 MemImport = nullptr;
  PFN_cuMemAddressReserve_v10020 AddressReserve = nullptr;
  PFN_cuMemAddressFree_v10020 AddressFree = nullptr;
  PFN_cuMemMap_v10020 Map = nullptr;
  PFN_cuMemUnmap_v10020 Unmap = nullptr;
  PFN_cuMemSetAccess_v10020 SetAccess = nullptr;
  PFN_cuMemGetAllocationGranularity_v10020 Granularity = nullptr;
  PFN_cuMemGetAddressRange_v3020 AddressRange = nullptr;
  bool ok = false;
  std::string why;
};

template <typename F>
bool Entry(const char* name, F* out, std::string* why) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status{};
#if CUDART_VERSION >= 12050
  cudaError_t e = cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &status);
#else
  // Before 12.5: the newest version of each symbol the driver has (the ones
  // used here kept their signatures since 12.0).
  cudaError_t e = cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &status);
#endif
  if (e != cudaSuccess) ClearLastError();
  if (e != cudaSuccess || status != cudaDriverEntryPointSuccess || fn == nullptr) {
    *why = Msg("driver entry point ", name, " is missing (", cudaGetErrorString(e), ")");
    return false;
  }
  *out = reinterpret_cast<F>(fn);
  return true;
}

Result DriverFailed(const Driver& d, CUresult r, const char* what) {
  const char* name = "?";
  if (d.GetErrorName != nullptr) d.GetErrorName(r, &name);
  if (r == CUDA_ERROR_OUT_OF_MEMORY) return Result::OutOfMemory(Msg(what, ": out of GPU memory"));
  return Result::Failed(Msg(what, " failed: ", name));
}
#define LDD_CU(call, what)                                       \
  do {                                                           \
    CUresult ldd_r_ = (call);                                    \
    if (ldd_r_ != CUDA_SUCCESS) return DriverFailed(drv_, ldd_r_, what); \
  } while (0)

// Makes a device current for a scope, then gives the thread its own back.
class CudaDeviceScope {
 public:
  explicit CudaDeviceScope(int device) {
    cudaError_t e = cudaGetDevice(&previous_);
    if (e == cudaSuccess && previous_ != device) {
      e = cudaSetDevice(device);
      restore_ = e == cudaSuccess;
    }
    if (e != cudaSuccess) status_ = CudaFailed(e, "cudaSetDevice");
  }
  ~CudaDeviceScope() {
    if (restore_) Tolerate(cudaSetDevice(previous_));
  }
  CudaDeviceScope(const CudaDeviceScope&) = delete;
  CudaDeviceScope& operator=(const CudaDeviceScope&) = delete;
  const Result& status() const { return status_; }

 private:
  int previous_ = 0;
  bool restore_ = false;
  Result status_;
};

class CudaGpuApi final : public GpuApi {
 public:
  bool Available(std::string* reason) const override {
    Init();
    if (reason != nullptr) *reason = why_;
    return available_;
  }
  int DeviceCount() const override {
    Init();
    return device_count_;
  }
  Result SetDevice(int device) override {
    if (!Available(nullptr)) return Result::FeatureNotEnabled(why_);
    if (device < 0 || device >= device_count_)
      return Result::ParamInvalid(Msg("GPU ", device, " does not exist (", device_count_, " visible)"));
    LDD_CUDA(cudaSetDevice(device));
    return Result::Ok();
  }
  Result GetDevice(int* device) override {
    if (!Available(nullptr)) return Result::FeatureNotEnabled(why_);
    LDD_CUDA(cudaGetDevice(device));
    return Result::Ok();
  }
  bool VmmSupported(int device, std::string* reason) override {
    Result r = CheckVmm(device);
    if (reason != nullptr) *reason = r.message();
    return r.ok();
  }

  Result PointerInfo(const void* p, GpuPointerInfo* out) override {
    *out = GpuPointerInfo{};
    if (!Available(nullptr) || p == nullptr) return Result::Ok();
    cudaPointerAttributes attr{};
    cudaError_t e = cudaPointerGetAttributes(&attr, p);
    if (e != cudaSuccess) {
      ClearLastError();
      return Result::Ok();  // not memory CUDA knows: host
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) return Result::Ok();
    out->device = true;
    out->device_id = attr.device;
    if (drv_.AddressRange != nullptr) {
      CUdeviceptr base = 0;
      size_t size = 0;
      if (drv_.AddressRange(&base, &size, reinterpret_cast<CUdeviceptr>(p)) == CUDA_SUCCESS) {
        out->base = base;
        out->size = size;
      }
    }
    return Result::Ok();
  }

  Result EnablePeerAccess(int device, int peer) override {
    if (!Available(nullptr)) return Result::FeatureNotEnabled(why_);
    if (device == peer) return Result::Ok();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (peers_.count({device, peer}) != 0) return Result::Ok();
    }
    int can = 0;
    LDD_CUDA(cudaDeviceCanAccessPeer(&can, device, peer));
    if (can == 0) return Result::FeatureNotEnabled(Msg("GPU ", device, " cannot reach the memory of GPU ", peer));
    CudaDeviceScope scope(device);
    LDD_RETURN_IF_ERROR(scope.status());
    cudaError_t e = cudaDeviceEnablePeerAccess(peer, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled)
      ClearLastError();  // enabled by the application: fine
    else if (e != cudaSuccess)
      return CudaFailed(e, "cudaDeviceEnablePeerAccess");
    std::lock_guard<std::mutex> lock(mu_);
    peers_.insert({device, peer});
    return Result::Ok();
  }

  Result VmmAllocate(int device, uint64_t bytes, GpuVmmBuffer* out) override {
    LDD_RETURN_IF_ERROR(CheckVmm(device));
    CudaDeviceScope scope(device);
    LDD_RETURN_IF_ERROR(scope.status());
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = device;
    prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    size_t gran = 0;
    LDD_CU(drv_.Granularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED), "cuMemGetAllocationGranularity");
    uint64_t size = (bytes + gran - 1) / gran * gran;
    if (size == 0) size = gran;
    CUmemGenericAllocationHandle handle = 0;
    LDD_CU(drv_.MemCreate(&handle, size, &prop, 0), "cuMemCreate");
    GpuVmmBuffer b;
    b.handle = handle;
    b.size = size;
    b.device = device;
    Result r = MapHandle(&b);
    int fd = -1;
    if (r.ok()) {
      CUresult cr = drv_.MemExport(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
      if (cr != CUDA_SUCCESS) r = DriverFailed(drv_, cr, "cuMemExportToShareableHandle");
    }
    if (!r.ok()) {
      VmmUnmap(&b);
      return r;
    }
    b.fd = fd;
    *out = b;
    return Result::Ok();
  }
  void VmmFree(GpuVmmBuffer* b) override {
    VmmUnmap(b);
    if (b->fd >= 0) ::close(b->fd);
    b->fd = -1;
  }
  Result VmmImport(int fd, uint64_t size, int device, GpuVmmBuffer* out) override {
    LDD_RETURN_IF_ERROR(CheckVmm(device));
    CudaDeviceScope scope(device);
    LDD_RETURN_IF_ERROR(scope.status());
    CUmemGenericAllocationHandle handle = 0;
    LDD_CU(drv_.MemImport(&handle, reinterpret_cast<void*>(static_cast<intptr_t>(fd)),
                          CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
           "cuMemImportFromShareableHandle");
    GpuVmmBuffer b;
    b.handle = handle;
    b.size = size;
    b.device = device;
    Result r = MapHandle(&b);
    if (!r.ok()) {
      VmmUnmap(&b);
      return r;
    }
    *out = b;
    return Result::Ok();
  }
  void VmmUnmap(GpuVmmBuffer* b) override {
    if (!drv_.ok) return;
    CUdeviceptr p = reinterpret_cast<CUdeviceptr>(b->ptr);
    if (b->ptr != nullptr) {
      (void)drv_.Unmap(p, b->size);
      (void)drv_.AddressFree(p, b->size);
    }
    if (b->handle != 0) (void)drv_.MemRelease(b->handle);
    b->ptr = nullptr;
    b->handle = 0;
  }

  Result IpcGetHandle(void* base, GpuIpcHandle* out) override {
    cudaIpcMemHandle_t h{};
    LDD_CUDA(cudaIpcGetMemHandle(&h, base));
    static_assert(sizeof(h) == sizeof(GpuIpcHandle));
    std::memcpy(out->data(), &h, sizeof(h));
    std::lock_guard<std::mutex> lock(mu_);
    exported_[std::string(reinterpret_cast<const char*>(out->data()), out->size())] = base;
    return Result::Ok();
  }
  Result IpcOpen(const GpuIpcHandle& handle, int device, void** out) override {
    {
      // CUDA refuses to open a handle in the process that exported it
      // (both sides of a link may live in one process): our own pointer.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = exported_.find(std::string(reinterpret_cast<const char*>(handle.data()), handle.size()));
      if (it != exported_.end()) {
        ++self_opened_[it->second];
        *out = it->second;
        return Result::Ok();
      }
    }
    cudaIpcMemHandle_t h{};
    std::memcpy(&h, handle.data(), sizeof(h));
    CudaDeviceScope scope(device);  // the mapping belongs to the current device's context
    LDD_RETURN_IF_ERROR(scope.status());
    LDD_CUDA(cudaIpcOpenMemHandle(out, h, cudaIpcMemLazyEnablePeerAccess));
    return Result::Ok();
  }
  Result IpcClose(void* p) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = self_opened_.find(p);
      if (it != self_opened_.end()) {
        if (--it->second == 0) self_opened_.erase(it);
        return Result::Ok();
      }
    }
    LDD_CUDA(cudaIpcCloseMemHandle(p));
    return Result::Ok();
  }

  Result HostRegister(void* p, uint64_t bytes) override {
    cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped);
    const bool foreign = e == cudaErrorHostMemoryAlreadyRegistered;  // pinned by the application
    if (foreign) ClearLastError();
    if (e != cudaSuccess && !foreign) return CudaFailed(e, "cudaHostRegister");
    void* dev = nullptr;
    e = cudaHostGetDevicePointer(&dev, p, 0);
    if (e != cudaSuccess) {
      if (!foreign) Tolerate(cudaHostUnregister(p));
      return CudaFailed(e, "cudaHostGetDevicePointer");
    }
    std::lock_guard<std::mutex> lock(mu_);
    host_[reinterpret_cast<uintptr_t>(p)] = HostRange{bytes, reinterpret_cast<uintptr_t>(dev), foreign};
    return Result::Ok();
  }
  Result HostUnregister(void* p) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = host_.find(reinterpret_cast<uintptr_t>(p));
      if (it != host_.end()) {
        bool foreign = it->second.foreign;
        host_.erase(it);
        if (foreign) return Result::Ok();  // the application's pinning: left as it was
      }
    }
    LDD_CUDA(cudaHostUnregister(p));
    return Result::Ok();
  }
  Result HostAllocPinned(uint64_t bytes, void** out) override {
    LDD_CUDA(cudaHostAlloc(out, bytes, cudaHostAllocPortable | cudaHostAllocMapped));
    void* dev = nullptr;
    cudaError_t e = cudaHostGetDevicePointer(&dev, *out, 0);
    if (e != cudaSuccess) {
      Tolerate(cudaFreeHost(*out));
      *out = nullptr;
      return CudaFailed(e, "cudaHostGetDevicePointer");
    }
    std::lock_guard<std::mutex> lock(mu_);
    host_[reinterpret_cast<uintptr_t>(*out)] = HostRange{bytes, reinterpret_cast<uintptr_t>(dev), false};
    return Result::Ok();
  }
  void HostFreePinned(void* p) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      host_.erase(reinterpret_cast<uintptr_t>(p));
    }
    Tolerate(cudaFreeHost(p));
  }
  Result DeviceAlloc(uint64_t bytes, void** out) override {
    LDD_CUDA(cudaMalloc(out, bytes));
    return Result::Ok();
  }
  void DeviceFree(void* p) override { Tolerate(cudaFree(p)); }

  Result StreamCreate(GpuStream* out) override {
    cudaStream_t s = nullptr;
    LDD_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *out = s;
    return Result::Ok();
  }
  void StreamDestroy(GpuStream s) override { Tolerate(cudaStreamDestroy(static_cast<cudaStream_t>(s))); }
  Result EventCreate(GpuEvent* out) override {
    cudaEvent_t e = nullptr;
    LDD_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *out = e;
    return Result::Ok();
  }
  void EventDestroy(GpuEvent e) override { Tolerate(cudaEventDestroy(static_cast<cudaEvent_t>(e))); }
  Result EventRecord(GpuEvent e, GpuStream s) override {
    LDD_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(e), static_cast<cudaStream_t>(s)));
    return Result::Ok();
  }
  Result EventQuery(GpuEvent e) override {
    cudaError_t r = cudaEventQuery(static_cast<cudaEvent_t>(e));
    if (r == cudaSuccess) return Result::Ok();
    if (r == cudaErrorNotReady) {
      ClearLastError();  // CUDA records NotReady as the thread's error too
      return Result::Timeout("GPU work still running");
    }
    return CudaFailed(r, "cudaEventQuery");
  }
  Result MemcpyAsync(void* dst, const void* src, uint64_t bytes, GpuStream s) override {
    LDD_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(s)));
    return Result::Ok();
  }
  Result LaunchCopyRuns(const GpuCopyRun* table, uint32_t count, const volatile uint32_t* cancel,
                        GpuStream s) override {
    LDD_CUDA(LaunchCopyRunsKernel(table, count, cancel, static_cast<cudaStream_t>(s)));
    return Result::Ok();
  }
  void KernelAddresses(int device, GpuCopyRun* runs, uint32_t count) override {
    if (HostPointerUsable(device)) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (host_.empty()) return;
    auto translate = [this](uint64_t* a) {
      auto it = host_.upper_bound(*a);
      if (it == host_.begin()) return;
      --it;
      if (*a - it->first < it->second.size) *a = it->second.device + (*a - it->first);
    };
    for (uint32_t i = 0; i < count; ++i) {
      translate(&runs[i].dst);
      translate(&runs[i].src);
    }
  }

 private:
  void Init() const {
    std::call_once(once_, [this] {
      int count = 0;
      cudaError_t e = cudaGetDeviceCount(&count);
      if (e != cudaSuccess || count == 0) {
        why_ = e != cudaSuccess ? Msg("no usable GPU: ", cudaGetErrorString(e)) : std::string("no GPU is visible");
        (void)cudaGetLastError();
        return;
      }
      device_count_ = count;
      available_ = true;
      Driver& d = drv_;
      d.ok = Entry("cuGetErrorName", &d.GetErrorName, &d.why) && Entry("cuDeviceGet", &d.DeviceGet, &d.why) &&
             Entry("cuDeviceGetAttribute", &d.DeviceGetAttribute, &d.why) &&
             Entry("cuMemCreate", &d.MemCreate, &d.why) &&
             Entry("cuMemRelease", &d.MemRelease, &d.why) &&
             Entry("cuMemExportToShareableHandle", &d.MemExport, &d.why) &&
             Entry("cuMemImportFromShareableHandle", &d.MemImport, &d.why) &&
             Entry("cuMemAddressReserve", &d.AddressReserve, &d.why) &&
             Entry("cuMemAddressFree", &d.AddressFree, &d.why) && Entry("cuMemMap", &d.Map, &d.why) &&
             Entry("cuMemUnmap", &d.Unmap, &d.why) && Entry("cuMemSetAccess", &d.SetAccess, &d.why) &&
             Entry("cuMemGetAllocationGranularity", &d.Granularity, &d.why) &&
             Entry("cuMemGetAddressRange", &d.AddressRange, &d.why);
      if (!d.ok) LDD_LOG(Warn) << "GPU memory cannot be shared between processes: " << d.why;
    });
  }

  // Whether kernels on `device` reach registered host memory at its host
  // address (cudaDevAttrCanUseHostPointerForRegisteredMem); asked once.
  bool HostPointerUsable(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    if (device < 0 || device >= device_count_) return false;
    if (host_pointer_usable_.empty()) host_pointer_usable_.assign(device_count_, -1);
    int& v = host_pointer_usable_[device];
    if (v < 0) {
      int value = 0;
      if (cudaDeviceGetAttribute(&value, cudaDevAttrCanUseHostPointerForRegisteredMem, device) != cudaSuccess) {
        ClearLastError();
        value = 0;
      }
      v = value != 0 ? 1 : 0;
    }
    return v == 1;
  }

  // VMM memory shareable by POSIX fd: the entry points, and the device's support.
  Result CheckVmm(int device) {
    if (!Available(nullptr)) return Result::FeatureNotEnabled(why_);
    if (device < 0 || device >= device_count_)
      return Result::ParamInvalid(Msg("GPU ", device, " does not exist (", device_count_, " visible)"));
    if (!drv_.ok) return Result::FeatureNotEnabled(drv_.why);
    CUdevice dev = 0;
    int vmm = 0, fd = 0;
    if (drv_.DeviceGet(&dev, device) != CUDA_SUCCESS ||
        drv_.DeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev) != CUDA_SUCCESS ||
        drv_.DeviceGetAttribute(&fd, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, dev) !=
            CUDA_SUCCESS)
      return Result::FeatureNotEnabled(Msg("cannot ask GPU ", device, " for VMM support"));
    if (vmm == 0) return Result::FeatureNotEnabled(Msg("GPU ", device, " has no virtual memory management"));
    if (fd == 0) return Result::FeatureNotEnabled(Msg("GPU ", device, " cannot share memory by file descriptor"));
    return Result::Ok();
  }

  Result MapHandle(GpuVmmBuffer* b) {
    CUdeviceptr p = 0;
    LDD_CU(drv_.AddressReserve(&p, b->size, 0, 0, 0), "cuMemAddressReserve");
    CUresult r = drv_.Map(p, b->size, 0, b->handle, 0);
    if (r != CUDA_SUCCESS) {
      (void)drv_.AddressFree(p, b->size);
      return DriverFailed(drv_, r, "cuMemMap");
    }
    b->ptr = reinterpret_cast<void*>(p);
    CUmemAccessDesc access{};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = b->device;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    LDD_CU(drv_.SetAccess(p, b->size, &access, 1), "cuMemSetAccess");
    return Result::Ok();
  }

  mutable std::once_flag once_;
  mutable bool available_ = false;
  mutable int device_count_ = 0;
  mutable std::string why_;
  mutable Driver drv_;

  struct HostRange {
    uint64_t size = 0;
    uintptr_t device = 0;  // cudaHostGetDevicePointer
    bool foreign = false;  // pinned by someone else: never unregistered here
  };
  std::mutex mu_;
  std::map<uintptr_t, HostRange> host_;           // registered or pinned by us, by host address
  std::map<std::string, void*> exported_;         // our IPC handles -> their allocations
  std::map<void*, int> self_opened_;              // our own handles opened here
  std::vector<int> host_pointer_usable_;          // per device: -1 unknown, 0, 1
  std::set<std::pair<int, int>> peers_;           // (device, peer) with peer access enabled
};

}  // namespace

std::unique_ptr<GpuApi> NewCudaGpuApi() { return std::make_unique<CudaGpuApi>(); }

GpuApi& SystemGpuApi() {
  static GpuApi* api = NewCudaGpuApi().release();  // never destroyed: used until exit
  return *api;
}

bool BuiltWithCuda() { return true; }

}  // namespace lldd
