#include "gpu/gpu_api.h"

#include <atomic>

namespace lldd {
namespace {
std::atomic<GpuApi*> g_override{nullptr};
}  // namespace

GpuApi& Gpu() {
  GpuApi* api = g_override.load(std::memory_order_acquire);
  return api != nullptr ? *api : SystemGpuApi();
}

void SetGpuApiForTesting(GpuApi* api) { g_override.store(api, std::memory_order_release); }

}  // namespace lldd
