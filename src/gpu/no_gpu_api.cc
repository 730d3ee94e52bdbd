// The GPU layer of a build without CUDA: never available.
#include "gpu/gpu_api.h"

namespace lldd {
namespace {

Result NoGpu() { return Result::FeatureNotEnabled("llm-datadist was built without CUDA"); }

class NoGpuApi final : public GpuApi {
 public:
  bool Available(std::string* reason) const override {
    if (reason != nullptr) *reason = "llm-datadist was built without CUDA";
    return false;
  }
  int DeviceCount() const override { return 0; }
  Result SetDevice(int) override { return NoGpu(); }
  Result GetDevice(int*) override { return NoGpu(); }
  bool VmmSupported(int, std::string* reason) override {
    if (reason != nullptr) *reason = "llm-datadist was built without CUDA";
    return false;
  }
  Result EnablePeerAccess(int, int) override { return NoGpu(); }
  Result PointerInfo(const void*, GpuPointerInfo* out) override {
    *out = GpuPointerInfo{};
    return Result::Ok();
  }
  Result VmmAllocate(int, uint64_t, GpuVmmBuffer*) override { return NoGpu(); }
  void VmmFree(GpuVmmBuffer*) override {}
  Result VmmImport(int, uint64_t, int, GpuVmmBuffer*) override { return NoGpu(); }
  void VmmUnmap(GpuVmmBuffer*) override {}
  Result IpcGetHandle(void*, GpuIpcHandle*) override { return NoGpu(); }
  Result IpcOpen(const GpuIpcHandle&, int, void**) override { return NoGpu(); }
  Result IpcClose(void*) override { return NoGpu(); }
  Result HostRegister(void*, uint64_t) override { return NoGpu(); }
  Result HostUnregister(void*) override { return NoGpu(); }
  Result HostAllocPinned(uint64_t, void**) override { return NoGpu(); }
  void HostFreePinned(void*) override {}
  Result DeviceAlloc(uint64_t, void**) override { return NoGpu(); }
  void DeviceFree(void*) override {}
  Result StreamCreate(GpuStream*) override { return NoGpu(); }
  void StreamDestroy(GpuStream) override {}
  Result EventCreate(GpuEvent*) override { return NoGpu(); }
  void EventDestroy(GpuEvent) override {}
  Result EventRecord(GpuEvent, GpuStream) override { return NoGpu(); }
  Result EventQuery(GpuEvent) override { return NoGpu(); }
  Result MemcpyAsync(void*, const void*, uint64_t, GpuStream) override { return NoGpu(); }
  Result LaunchCopyRuns(const GpuCopyRun*, uint32_t, const volatile uint32_t*, GpuStream) override { return NoGpu(); }
};

}  // namespace

GpuApi& SystemGpuApi() {
  static NoGpuApi api;
  return api;
}

bool BuiltWithCuda() { return false; }

}  // namespace lldd
