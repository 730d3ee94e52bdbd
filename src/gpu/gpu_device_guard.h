// Makes a device current for a scope and gives the calling thread its own
// back afterwards: the library runs on its callers' threads (a serving
// engine's, a framework's), whose current device is theirs, not ours.
#ifndef LLM_DATADIST_SRC_GPU_GPU_DEVICE_GUARD_H_
#define LLM_DATADIST_SRC_GPU_GPU_DEVICE_GUARD_H_

#include "gpu/gpu_api.h"

namespace lldd {

class GpuDeviceGuard {
 public:
  GpuDeviceGuard(GpuApi& api, int device) : api_(api) {
    status_ = api_.GetDevice(&previous_);
    if (!status_.ok() || previous_ == device) return;
    status_ = api_.SetDevice(device);
    restore_ = status_.ok();
  }
  ~GpuDeviceGuard() {
    if (restore_) (void)api_.SetDevice(previous_);
  }
  GpuDeviceGuard(const GpuDeviceGuard&) = delete;
  GpuDeviceGuard& operator=(const GpuDeviceGuard&) = delete;
  // Whether `device` is current now.
  const Result& status() const { return status_; }

 private:
  GpuApi& api_;
  Result status_;
  int previous_ = -1;
  bool restore_ = false;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_GPU_DEVICE_GUARD_H_
