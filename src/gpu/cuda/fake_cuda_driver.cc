// The driver entry points of the fake CUDA runtime (see fake_cuda_runtime.h),
// reached only through its cudaGetDriverEntryPointByVersion: VMM allocations
// are memfds, exported as their descriptors, mapped over reserved ranges.
#include <cuda.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/cuda/fake_cuda_state.h"

namespace lldd::fake_cuda::internal {
namespace {

struct VmmHandle {
  int fd = -1;
  uint64_t size = 0;
  int device = 0;
};

CUresult DrvGetErrorName(CUresult r, const char** out) {
  *out = r == CUDA_SUCCESS ? "CUDA_SUCCESS" : r == CUDA_ERROR_OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY"
                                                                          : "CUDA_ERROR_FAKE";
  return CUDA_SUCCESS;
}
CUresult DrvDeviceGet(CUdevice* out, int ordinal) {
  if (!ValidDevice(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
  *out = ordinal;
  return CUDA_SUCCESS;
}
CUresult DrvDeviceGetAttribute(int* out, CUdevice_attribute attr, CUdevice dev) {
  std::lock_guard<std::mutex> lock(S().mu);
  if (!ValidDevice(dev)) return CUDA_ERROR_INVALID_DEVICE;
  if (attr == CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)
    *out = S().config.vmm_supported;
  else if (attr == CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED)
    *out = S().config.posix_fd_supported;
  else
    return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}
CUresult DrvGranularity(size_t* out, const CUmemAllocationProp*, CUmemAllocationGranularity_flags) {
  *out = kGranularity;
  return CUDA_SUCCESS;
}
CUresult DrvMemCreate(CUmemGenericAllocationHandle* out, size_t size, const CUmemAllocationProp* prop,
                      unsigned long long) {
  std::lock_guard<std::mutex> lock(S().mu);
  const Config& c = S().config;
  if (!ValidDevice(prop->location.id)) return CUDA_ERROR_INVALID_DEVICE;
  if (!c.vmm_supported) return CUDA_ERROR_NOT_SUPPORTED;
  if ((prop->requestedHandleTypes & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != 0 && !c.posix_fd_supported)
    return CUDA_ERROR_NOT_SUPPORTED;
  if (size == 0 || size % kGranularity != 0) return CUDA_ERROR_INVALID_VALUE;
  int fd = memfd_create("fake-cuda-vmm", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
  *out = reinterpret_cast<CUmemGenericAllocationHandle>(new VmmHandle{fd, size, prop->location.id});
  return CUDA_SUCCESS;
}
CUresult DrvMemRelease(CUmemGenericAllocationHandle h) {
  auto* v = reinterpret_cast<VmmHandle*>(h);
  ::close(v->fd);
  delete v;
  return CUDA_SUCCESS;
}
CUresult DrvMemExport(void* out, CUmemGenericAllocationHandle h, CUmemAllocationHandleType type, unsigned long long) {
  if (type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) return CUDA_ERROR_NOT_SUPPORTED;
  *static_cast<int*>(out) = fcntl(reinterpret_cast<VmmHandle*>(h)->fd, F_DUPFD_CLOEXEC, 0);
  return CUDA_SUCCESS;
}
CUresult DrvMemImport(CUmemGenericAllocationHandle* out, void* os_handle, CUmemAllocationHandleType type) {
  if (type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) return CUDA_ERROR_NOT_SUPPORTED;
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(os_handle));
  struct stat st {};
  if (fstat(fd, &st) != 0) return CUDA_ERROR_INVALID_HANDLE;
  int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  // The exporter's device is not in the fd; the importer maps it for its own.
  *out = reinterpret_cast<CUmemGenericAllocationHandle>(new VmmHandle{mine, static_cast<uint64_t>(st.st_size), -1});
  return CUDA_SUCCESS;
}
CUresult DrvAddressReserve(CUdeviceptr* out, size_t size, size_t, CUdeviceptr, unsigned long long) {
  void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  *out = reinterpret_cast<CUdeviceptr>(p);
  return CUDA_SUCCESS;
}
CUresult DrvAddressFree(CUdeviceptr p, size_t size) {
  munmap(reinterpret_cast<void*>(p), size);
  return CUDA_SUCCESS;
}
CUresult DrvMap(CUdeviceptr p, size_t size, size_t offset, CUmemGenericAllocationHandle h, unsigned long long) {
  auto* v = reinterpret_cast<VmmHandle*>(h);
  if (offset > v->size || size > v->size - offset) return CUDA_ERROR_INVALID_VALUE;  // beyond the allocation
  void* m = mmap(reinterpret_cast<void*>(p), size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, v->fd,
                 static_cast<off_t>(offset));
  if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  std::lock_guard<std::mutex> lock(S().mu);
  Range r;
  r.size = size;
  r.kind = Kind::kVmm;
  r.device = v->device;
  S().ranges[p] = r;
  return CUDA_SUCCESS;
}
CUresult DrvUnmap(CUdeviceptr p, size_t size) {
  std::lock_guard<std::mutex> lock(S().mu);
  if (S().ranges.erase(p) == 0) return CUDA_ERROR_INVALID_VALUE;
  mmap(reinterpret_cast<void*>(p), size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  return CUDA_SUCCESS;
}
CUresult DrvSetAccess(CUdeviceptr p, size_t size, const CUmemAccessDesc* desc, size_t count) {
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = Find(p, size);
  if (it == S().ranges.end() || it->second.kind != Kind::kVmm) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    if (!ValidDevice(desc[i].location.id)) return CUDA_ERROR_INVALID_DEVICE;
    it->second.access.insert(desc[i].location.id);
  }
  return CUDA_SUCCESS;
}
CUresult DrvAddressRange(CUdeviceptr* base, size_t* size, CUdeviceptr p) {
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = Find(p);
  if (it == S().ranges.end() || IsHost(it->second.kind)) return CUDA_ERROR_NOT_FOUND;
  if (base != nullptr) *base = it->first;
  if (size != nullptr) *size = it->second.size;
  return CUDA_SUCCESS;
}

}  // namespace

void* DriverEntryPoint(const std::string& name) {
  static const std::map<std::string, void*> table = {
      {"cuGetErrorName", reinterpret_cast<void*>(&DrvGetErrorName)},
      {"cuDeviceGet", reinterpret_cast<void*>(&DrvDeviceGet)},
      {"cuDeviceGetAttribute", reinterpret_cast<void*>(&DrvDeviceGetAttribute)},
      {"cuMemGetAllocationGranularity", reinterpret_cast<void*>(&DrvGranularity)},
      {"cuMemCreate", reinterpret_cast<void*>(&DrvMemCreate)},
      {"cuMemRelease", reinterpret_cast<void*>(&DrvMemRelease)},
      {"cuMemExportToShareableHandle", reinterpret_cast<void*>(&DrvMemExport)},
      {"cuMemImportFromShareableHandle", reinterpret_cast<void*>(&DrvMemImport)},
      {"cuMemAddressReserve", reinterpret_cast<void*>(&DrvAddressReserve)},
      {"cuMemAddressFree", reinterpret_cast<void*>(&DrvAddressFree)},
      {"cuMemMap", reinterpret_cast<void*>(&DrvMap)},
      {"cuMemUnmap", reinterpret_cast<void*>(&DrvUnmap)},
      {"cuMemSetAccess", reinterpret_cast<void*>(&DrvSetAccess)},
      {"cuMemGetAddressRange", reinterpret_cast<void*>(&DrvAddressRange)},
  };
  auto it = table.find(name);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace lldd::fake_cuda::internal
