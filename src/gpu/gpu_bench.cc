// GPU benchmark rows for scripts/gpu-check.sh (issue 11). Every ratio is
// against a limit measured in the same run, on the same GPU:
//   d2d_memcpy       one cudaMemcpyAsync of all the bytes (the copy-engine limit)
//   gather_*         GpuCopier: one kernel over the block list, in this process
// Exit status 0 when every row ran (ratios are reported, not asserted); 77
// when there is no GPU (skipped).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_api.h"
#include "gpu/gpu_copier.h"

namespace lldd {
namespace {

using Clock = std::chrono::steady_clock;

double MedianSeconds(int reps, const std::function<Result()>& fn, Result* failed) {
  std::vector<double> t;
  for (int i = 0; i < reps + 2; ++i) {
    auto start = Clock::now();
    Result r = fn();
    double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (!r.ok()) {
      *failed = r;
      return 0;
    }
    if (i >= 2) t.push_back(s);  // two warm-ups
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void Row(const char* name, double gbps, double ratio, const char* against, double us) {
  if (ratio > 0)
    std::printf("%-34s %9.1f GB/s  %7.1f us/call  ratio %.2f of %s\n", name, gbps, us, ratio, against);
  else
    std::printf("%-34s %9.1f GB/s  %7.1f us/call\n", name, gbps, us);
  std::fflush(stdout);
}

int Run() {
  GpuApi& api = SystemGpuApi();
  std::string why;
  if (!api.Available(&why)) {
    std::printf("gpu_bench: skipped, no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  Result r = api.SetDevice(0);
  if (!r.ok()) {
    std::printf("gpu_bench: %s\n", r.message().c_str());
    return 1;
  }
  constexpr uint64_t kPool = 256ULL << 20;
  void* src = nullptr;
  void* dst = nullptr;
  r = api.DeviceAlloc(kPool, &src);
  if (r.ok()) r = api.DeviceAlloc(kPool, &dst);
  if (!r.ok()) {
    std::printf("gpu_bench: %s\n", r.message().c_str());
    return 1;
  }
  GpuStream stream = nullptr;
  GpuEvent event = nullptr;
  (void)api.StreamCreate(&stream);
  (void)api.EventCreate(&event);
  GpuCopier copier(api, 0);
  Result failed;
  int status = 0;

  struct Case {
    const char* name;
    uint64_t block;
    uint64_t count;
  };
  for (Case c : {Case{"gather_2048x32KiB", 32 << 10, 2048}, Case{"gather_2048x4KiB", 4 << 10, 2048},
                 Case{"gather_64x1MiB", 1 << 20, 64}, Case{"gather_128x1MiB", 1 << 20, 128}}) {
    uint64_t bytes = c.block * c.count;
    // The limit: one copy of the same bytes.
    double t_memcpy = MedianSeconds(
        10,
        [&] {
          LDD_RETURN_IF_ERROR(api.MemcpyAsync(dst, src, bytes, stream));
          LDD_RETURN_IF_ERROR(api.EventRecord(event, stream));
          return WaitGpuEvent(api, event, Deadline::AfterMillis(10000));
        },
        &failed);
    // Random distinct blocks of a pool four times the list.
    std::vector<uint64_t> from(kPool / c.block), to(kPool / c.block);
    std::iota(from.begin(), from.end(), 0);
    std::iota(to.begin(), to.end(), 0);
    std::mt19937 rng(static_cast<uint32_t>(c.block + c.count));
    std::shuffle(from.begin(), from.end(), rng);
    std::shuffle(to.begin(), to.end(), rng);
    std::vector<GpuCopy> copies;
    for (uint64_t i = 0; i < c.count; ++i)
      copies.push_back({static_cast<uint8_t*>(dst) + to[i] * c.block, static_cast<uint8_t*>(src) + from[i] * c.block,
                        c.block});
    double t_gather =
        MedianSeconds(10, [&] { return copier.Run(copies, Deadline::AfterMillis(10000)); }, &failed);
    if (!failed.ok()) {
      std::printf("%s FAIL %s\n", c.name, failed.message().c_str());
      status = 1;
      break;
    }
    std::string memcpy_name = std::string("d2d_memcpy_") + std::to_string(bytes >> 20) + "MiB";
    Row(memcpy_name.c_str(), bytes / t_memcpy / 1e9, 0, "", t_memcpy * 1e6);
    Row(c.name, bytes / t_gather / 1e9, t_memcpy / t_gather, "d2d_memcpy", t_gather * 1e6);
  }
  api.EventDestroy(event);
  api.StreamDestroy(stream);
  api.DeviceFree(src);
  api.DeviceFree(dst);
  return status;
}

}  // namespace
}  // namespace lldd

int main() { return lldd::Run(); }
