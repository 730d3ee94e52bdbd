#include "gpu/device_memory.h"

#include <mutex>

#include "common/logging.h"

namespace lldd {

namespace {

Result AllocateOn(GpuApi& api, uint64_t bytes, int32_t device_id, std::shared_ptr<Allocation>* out) {
  std::string why;
  if (!api.Available(&why)) return Result::FeatureNotEnabled(why);
  int device = device_id < 0 ? 0 : device_id;
  if (device >= api.DeviceCount())
    return Result::ParamInvalid(Msg("OPTION_DEVICE_ID ", device_id, " names no GPU (", api.DeviceCount(),
                                    " visible)"));
  GpuVmmBuffer buffer;
  LDD_RETURN_IF_ERROR(api.VmmAllocate(device, bytes, &buffer).WithContext(Msg("GPU cache of ", bytes, " bytes")));
  *out = std::make_shared<DeviceAllocation>(api, buffer);
  return Result::Ok();
}

bool IsDeviceOn(GpuApi& api, const void* p, int* device_id) {
  GpuPointerInfo info;
  if (!api.PointerInfo(p, &info).ok() || !info.device) return false;
  if (device_id != nullptr) *device_id = info.device_id;
  return true;
}

class GpuMemoryProvider final : public DeviceMemoryProvider {
 public:
  explicit GpuMemoryProvider(GpuApi& api) : api_(api) {}
  Result Allocate(uint64_t bytes, int32_t device_id, std::shared_ptr<Allocation>* out) override {
    Result r = AllocateOn(api_, bytes, device_id, out);
    if (r.code() == llm_datadist::LLM_OUT_OF_MEMORY) return Result(llm_datadist::LLM_DEVICE_OUT_OF_MEMORY, r.message());
    return r;
  }
  bool IsDeviceMemory(const void* p) override { return IsDeviceOn(api_, p, nullptr); }

 private:
  GpuApi& api_;
};

}  // namespace

Result AllocateDeviceCacheMemory(uint64_t bytes, int32_t device_id, std::shared_ptr<Allocation>* out) {
  return AllocateOn(Gpu(), bytes, device_id, out);
}

bool IsDeviceMemory(const void* p, int* device_id) { return IsDeviceOn(Gpu(), p, device_id); }

std::shared_ptr<DeviceMemoryProvider> MakeGpuMemoryProvider(GpuApi& api) {
  return std::make_shared<GpuMemoryProvider>(api);
}

bool InstallGpuMemoryProvider() {
  if (GetDeviceMemoryProvider() != nullptr) return true;
  std::string why;
  if (!Gpu().Available(&why) || !Gpu().VmmSupported(0, &why)) {
    static std::once_flag once;
    std::call_once(once, [&] {
      LDD_LOG(Warn) << "kDevice caches are host memory in this process: " << why;
    });
    return false;
  }
  SetDeviceMemoryProvider(MakeGpuMemoryProvider(Gpu()));
  return true;
}

}  // namespace lldd
