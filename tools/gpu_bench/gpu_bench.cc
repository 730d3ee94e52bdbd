// GPU benchmark rows for scripts/gpu-check.sh (issue 11). Every ratio is
// against a limit measured in the same run, on the same GPU:
//   d2d_memcpy_*       one cudaMemcpyAsync of all the bytes (copy-engine limit)
//   gather_*           GpuCopier: one kernel over the block list, in this process
//   cuda_ipc_pull_*    the same block list pulled from another process's GPU
//                      cache over the cuda_ipc transport (first call: with
//                      opening the peer's handles), ratio to gather_*
//   tcp_loopback_*     the same bytes over one TCP loopback connection from
//                      pinned host memory, and from/into GPU memory staged
//                      through DeviceStager (ratio staged / host)
//   cancel_*           a copy stopped at its deadline (issue 21): how long the
//                      call returns after it, through the kernel and through
//                      the copy engines
// Ratios are reported, not asserted; the last lines give one verdict per
// target of the GPU memory issue ("TARGET ... PASS|FAIL") and the figures it
// asks to be reported ("REPORT ..."). Exit status 0 when every row ran, 77
// when there is no GPU, 1 on a failure.
//
//   gpu_bench [--fake]      --fake: on the fake GPU (host memory), to check the harness
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "transport/tcp/device_staging.h"
#include "gpu/fake_gpu_api.h"
#include "gpu/gpu_api.h"
#include "gpu/gpu_copier.h"
#include "transport/cuda/cuda_ipc_pair.h"

extern char** environ;

namespace lldd {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPool = 256ULL << 20;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

double MedianSeconds(int reps, const std::function<Result()>& fn, Result* failed) {
  std::vector<double> t;
  for (int i = 0; i < reps + 2; ++i) {
    auto start = Clock::now();
    Result r = fn();
    double s = Seconds(start);
    if (!r.ok()) {
      *failed = r;
      return 1;
    }
    if (i >= 2) t.push_back(s);  // two warm-ups
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void Row(const std::string& name, uint64_t bytes, double seconds, double ratio = 0, const char* against = "") {
  std::printf("%-36s %9.1f GB/s %10.1f us/call", name.c_str(), bytes / seconds / 1e9, seconds * 1e6);
  if (ratio > 0) std::printf("   ratio %.2f of %s", ratio, against);
  std::printf("\n");
  std::fflush(stdout);
}

struct Case {
  const char* name;
  uint64_t block;
  uint64_t count;
};
const Case kCases[] = {{"2048x32KiB", 32 << 10, 2048}, {"2048x4KiB", 4 << 10, 2048}, {"64x1MiB", 1 << 20, 64}};

// Random distinct blocks of the pool for sources and destinations.
std::vector<std::pair<uint64_t, uint64_t>> BlockList(const Case& c, uint64_t pool) {
  std::vector<uint64_t> from(pool / c.block), to(pool / c.block);
  std::iota(from.begin(), from.end(), 0);
  std::iota(to.begin(), to.end(), 0);
  std::mt19937 rng(static_cast<uint32_t>(c.block + c.count));
  std::shuffle(from.begin(), from.end(), rng);
  std::shuffle(to.begin(), to.end(), rng);
  std::vector<std::pair<uint64_t, uint64_t>> list;
  for (uint64_t i = 0; i < c.count; ++i) list.push_back({to[i] * c.block, from[i] * c.block});
  return list;
}

struct Limits {
  double gather[3] = {};
  double memcpy[3] = {};
};

// What the verdict lines need, filled by the rows as they run.
struct Findings {
  double ipc_vs_gather_32k = 0;   // cuda_ipc pull 2048x32KiB / in-process gather
  double ipc_vs_memcpy_1m = 0;    // cuda_ipc pull 64x1MiB / in-process cudaMemcpy
  double staged_vs_host = 0;      // GPU over TCP loopback / host over TCP loopback
  double open_handles_ms = -1;    // first call on a new link minus a later one
  double cancel_kernel_us = -1;   // past the deadline, kernel path
  double cancel_engine_us = -1;   // past the deadline, copy-engine path
};

void Verdict(const char* target, double ratio, double floor) {
  std::printf("TARGET %-58s ratio %.2f (>= %.1f): %s\n", target, ratio, floor, ratio >= floor ? "PASS" : "FAIL");
}

void PrintVerdicts(const Findings& f) {
  std::printf("\n");
  Verdict("same-host GPU-to-GPU pull, 2048 x 32 KiB, vs in-process gather", f.ipc_vs_gather_32k, 0.8);
  Verdict("same-host GPU-to-GPU pull, 64 x 1 MiB, vs in-process cudaMemcpy", f.ipc_vs_memcpy_1m, 0.8);
  Verdict("GPU cache to GPU cache over TCP loopback, vs host memory TCP", f.staged_vs_host, 0.8);
  std::printf("REPORT first transfer on a new link: opening the peer's handles costs %.2f ms\n", f.open_handles_ms);
  std::printf("REPORT a GPU copy stopped at its deadline returns %.0f us after it (kernel), %.0f us (copy engines)\n",
              f.cancel_kernel_us, f.cancel_engine_us);
  std::fflush(stdout);
}

Result InProcessRows(GpuApi& api, Limits* limits) {
  void* src = nullptr;
  void* dst = nullptr;
  LDD_RETURN_IF_ERROR(api.DeviceAlloc(kPool, &src));
  LDD_RETURN_IF_ERROR(api.DeviceAlloc(kPool, &dst));
  GpuStream stream = nullptr;
  GpuEvent event = nullptr;
  LDD_RETURN_IF_ERROR(api.StreamCreate(&stream));
  LDD_RETURN_IF_ERROR(api.EventCreate(&event));
  GpuCopier copier(api, 0);
  Result failed;
  for (size_t k = 0; k < 3 && failed.ok(); ++k) {
    const Case& c = kCases[k];
    uint64_t bytes = c.block * c.count;
    double t_memcpy = MedianSeconds(
        10,
        [&] {
          LDD_RETURN_IF_ERROR(api.MemcpyAsync(dst, src, bytes, stream));
          LDD_RETURN_IF_ERROR(api.EventRecord(event, stream));
          return WaitGpuEvent(api, event, Deadline::AfterMillis(10000));
        },
        &failed);
    std::vector<GpuCopy> copies;
    for (auto [to, from] : BlockList(c, kPool))
      copies.push_back({static_cast<uint8_t*>(dst) + to, static_cast<uint8_t*>(src) + from, c.block});
    double t_gather = MedianSeconds(10, [&] { return copier.Run(copies, Deadline::AfterMillis(10000)); }, &failed);
    if (!failed.ok()) break;
    limits->memcpy[k] = t_memcpy;
    limits->gather[k] = t_gather;
    Row(Msg("d2d_memcpy_", bytes >> 20, "MiB"), bytes, t_memcpy);
    Row(Msg("gather_", c.name), bytes, t_gather, t_memcpy / t_gather, "d2d_memcpy");
  }
  api.EventDestroy(event);
  api.StreamDestroy(stream);
  api.DeviceFree(src);
  api.DeviceFree(dst);
  return failed;
}

Result CrossProcessRows(GpuApi& api, const Limits& limits, bool fake, Findings* found) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Result::Failed("socketpair failed");
  // A fresh process (never fork a process that initialised CUDA); it gets
  // only its end of the pair, as fd 100, so our hang-up ends it.
  constexpr int kOwnerFd = 100;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], kOwnerFd);
  std::string fd_arg = std::to_string(kOwnerFd);
  std::vector<char*> argv = {const_cast<char*>("/proc/self/exe"), const_cast<char*>("--owner"), fd_arg.data()};
  if (fake) argv.push_back(const_cast<char*>("--fake"));
  argv.push_back(nullptr);
  pid_t child = 0;
  int spawned = posix_spawn(&child, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return Result::Failed("cannot start the owner process");
  ::close(sv[1]);
  Result failed;
  {
    CudaIpcPuller puller(api);
    failed = puller.Open(sv[0]);
    void* local = nullptr;
    if (failed.ok()) failed = api.DeviceAlloc(kPool, &local);
    for (size_t k = 0; k < 3 && failed.ok(); ++k) {
      const Case& c = kCases[k];
      uint64_t bytes = c.block * c.count;
      std::vector<IoOp> ops;
      for (auto [to, from] : BlockList(c, kPool))
        ops.push_back({static_cast<uint8_t*>(local) + to, puller.remote_regions()[0], from, c.block});
      double first_call = 0;
      if (k == 0) {
        auto start = Clock::now();
        failed = puller.endpoint().Read(ops, Deadline::AfterMillis(30000));
        if (!failed.ok()) break;
        first_call = Seconds(start);
        Row(Msg("cuda_ipc_pull_", c.name, "_first_call"), bytes, first_call);
        // Check the bytes of that first call.
        std::vector<uint8_t> got(c.block);
        void* pinned = nullptr;
        failed = api.HostAllocPinned(c.block, &pinned);
        GpuCopier check(api, 0);
        for (size_t i = 0; i < ops.size() && failed.ok(); i += 97) {
          failed = check.Run({{static_cast<uint8_t*>(pinned), ops[i].local, c.block}}, Deadline::AfterMillis(10000));
          for (uint64_t b = 0; failed.ok() && b < c.block; b += 257)
            if (static_cast<uint8_t*>(pinned)[b] != PairPattern(0, ops[i].remote_offset + b))
              failed = Result::Failed(Msg("cuda_ipc pull: wrong byte in block ", i));
        }
        if (pinned != nullptr) api.HostFreePinned(pinned);
        if (!failed.ok()) break;
      }
      double t = MedianSeconds(10, [&] { return puller.endpoint().Read(ops, Deadline::AfterMillis(30000)); }, &failed);
      if (!failed.ok()) break;
      Row(Msg("cuda_ipc_pull_", c.name), bytes, t, limits.gather[k] / t, "gather (this process)");
      if (c.block >= (1 << 20)) Row(Msg("cuda_ipc_pull_", c.name), bytes, t, limits.memcpy[k] / t, "d2d_memcpy");
      if (k == 0) {
        found->ipc_vs_gather_32k = limits.gather[k] / t;
        found->open_handles_ms = (first_call - t) * 1e3;
      }
      if (c.block >= (1 << 20)) found->ipc_vs_memcpy_1m = limits.memcpy[k] / t;
    }
    if (local != nullptr) api.DeviceFree(local);
  }
  ::close(sv[0]);  // the owner exits when we hang up
  int status = 0;
  waitpid(child, &status, 0);
  return failed;
}

// One TCP loopback connection; `produce` writes `bytes` into fd, the reader
// thread `consume`s them. Returns seconds.
Result Loopback(uint64_t bytes, const std::function<Result(int)>& produce, const std::function<Result(int)>& consume,
                double* seconds) {
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return Result::Failed("loopback listen failed");
  int out = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(out, reinterpret_cast<sockaddr*>(&addr), len) != 0) return Result::Failed("loopback connect failed");
  int in = accept(listener, nullptr, nullptr);
  ::close(listener);
  (void)bytes;
  Result consumed;
  auto start = Clock::now();
  std::thread reader([&] { consumed = consume(in); });
  Result produced = produce(out);
  reader.join();
  *seconds = Seconds(start);
  ::close(in);
  ::close(out);
  LDD_RETURN_IF_ERROR(produced);
  return consumed;
}

// Both as the TCP transport moves bytes: sendmsg/recvmsg over many iovecs.
Result MoveIovs(int fd, std::vector<iovec> iovs, bool send) {
  size_t first = 0;
  while (first < iovs.size()) {
    msghdr msg{};
    msg.msg_iov = iovs.data() + first;
    msg.msg_iovlen = std::min<size_t>(iovs.size() - first, 1024);
    ssize_t n = send ? ::sendmsg(fd, &msg, MSG_NOSIGNAL) : ::recvmsg(fd, &msg, 0);
    if (n <= 0) return Result::LinkFailed(send ? "send failed" : "recv failed");
    auto left = static_cast<uint64_t>(n);
    while (first < iovs.size() && left >= iovs[first].iov_len) left -= iovs[first++].iov_len;
    if (left > 0) {
      iovs[first].iov_base = static_cast<uint8_t*>(iovs[first].iov_base) + left;
      iovs[first].iov_len -= left;
    }
  }
  return Result::Ok();
}
Result SendIovs(int fd, const std::vector<iovec>& iovs) { return MoveIovs(fd, iovs, true); }
Result RecvIovs(int fd, const std::vector<iovec>& iovs) { return MoveIovs(fd, iovs, false); }

Result StagingRows(GpuApi& api, Findings* found) {
  const Case c = kCases[0];
  const uint64_t bytes = c.block * c.count;
  void* dev_src = nullptr;
  void* dev_dst = nullptr;
  void* host_src = nullptr;
  void* host_dst = nullptr;
  LDD_RETURN_IF_ERROR(api.DeviceAlloc(kPool, &dev_src));
  LDD_RETURN_IF_ERROR(api.DeviceAlloc(kPool, &dev_dst));
  LDD_RETURN_IF_ERROR(api.HostAllocPinned(kPool, &host_src));
  LDD_RETURN_IF_ERROR(api.HostAllocPinned(kPool, &host_dst));
  std::vector<StagedRange> from_dev, to_dev;
  std::vector<iovec> from_host, to_host;
  for (auto [to, from] : BlockList(c, kPool)) {
    from_dev.push_back({static_cast<uint8_t*>(dev_src) + from, c.block, true});
    to_dev.push_back({static_cast<uint8_t*>(dev_dst) + to, c.block, true});
    from_host.push_back({static_cast<uint8_t*>(host_src) + from, c.block});
    to_host.push_back({static_cast<uint8_t*>(host_dst) + to, c.block});
  }
  GpuCopier copier_a(api, 0), copier_b(api, 0);
  DeviceStager sender(api, copier_a), receiver(api, copier_b);
  Result r;
  double host = 0, staged = 0, best_host = 1e9, best_staged = 1e9;
  for (int rep = 0; rep < 5 && r.ok(); ++rep) {
    r = Loopback(bytes, [&](int fd) { return SendIovs(fd, from_host); }, [&](int fd) { return RecvIovs(fd, to_host); },
                 &host);
    if (!r.ok()) break;
    r = Loopback(
        bytes,
        [&](int fd) {
          return sender.Produce(from_dev, [&](const std::vector<iovec>& v) { return SendIovs(fd, v); },
                                Deadline::AfterMillis(30000));
        },
        [&](int fd) {
          return receiver.Consume(to_dev, [&](const std::vector<iovec>& v) { return RecvIovs(fd, v); },
                                  Deadline::AfterMillis(30000));
        },
        &staged);
    best_host = std::min(best_host, host);
    best_staged = std::min(best_staged, staged);
  }
  if (r.ok()) {
    Row(Msg("tcp_loopback_host_", c.name), bytes, best_host);
    Row(Msg("tcp_loopback_gpu_staged_", c.name), bytes, best_staged, best_host / best_staged, "tcp_loopback_host");
    found->staged_vs_host = best_host / best_staged;
  }
  api.DeviceFree(dev_src);
  api.DeviceFree(dev_dst);
  api.HostFreePinned(host_src);
  api.HostFreePinned(host_dst);
  return r;
}

// GPU memory into pinned host memory (PCIe: milliseconds for the pool),
// stopped 1 ms in; the row is the time from the deadline to the return.
Result CancelRows(GpuApi& api, FakeGpuApi* fake, Findings* found) {
  void* src = nullptr;
  void* dst = nullptr;
  LDD_RETURN_IF_ERROR(api.DeviceAlloc(kPool, &src));
  LDD_RETURN_IF_ERROR(api.HostAllocPinned(kPool, &dst));
  if (fake != nullptr) fake->SetCopyRate(8ULL << 30);  // a GPU that takes its time
  Result failed;
  for (bool engines : {false, true}) {
    GpuCopyLimits limits;
    if (!engines) limits.copy_engine_min = UINT64_MAX;  // all through the kernel
    GpuCopier copier(api, 0, limits);
    std::vector<double> overrun_us;
    for (int rep = 0; rep < 5; ++rep) {
      Deadline deadline = Deadline::AfterMillis(1);
      Result r = copier.Run({{static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), kPool}}, deadline);
      double us = std::chrono::duration<double, std::micro>(Clock::now() - deadline.when()).count();
      if (r.ok()) continue;  // finished within 1 ms: nothing to stop
      if (r.code() != llm_datadist::LLM_TIMEOUT) {
        failed = r;
        break;
      }
      overrun_us.push_back(us);
    }
    if (!failed.ok()) break;
    std::sort(overrun_us.begin(), overrun_us.end());
    double median = overrun_us.empty() ? -1 : overrun_us[overrun_us.size() / 2];
    std::printf("%-36s %9.0f us past a 1 ms deadline (median of %zu stopped calls, 256 MiB device->pinned)\n",
                engines ? "cancel_copy_engines" : "cancel_kernel", median, overrun_us.size());
    (engines ? found->cancel_engine_us : found->cancel_kernel_us) = median;
  }
  if (fake != nullptr) fake->SetCopyRate(0);
  api.DeviceFree(src);
  api.HostFreePinned(dst);
  return failed;
}

int Main(int argc, char** argv) {
  bool fake = false;
  int owner_fd = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--fake") fake = true;
    if (a == "--owner" && i + 1 < argc) owner_fd = std::atoi(argv[++i]);
  }
  FakeGpuApi fake_api;
  GpuApi& api = fake ? static_cast<GpuApi&>(fake_api) : SystemGpuApi();
  if (owner_fd >= 0) return ServeCudaIpcOwner(api, owner_fd, 1, kPool).ok() ? 0 : 1;
  std::string why;
  if (!api.Available(&why)) {
    std::printf("gpu_bench: skipped, no usable GPU (%s)\n", why.c_str());
    return 77;
  }
  Result r = api.SetDevice(0);
  Limits limits;
  Findings found;
  if (r.ok()) r = InProcessRows(api, &limits);
  if (r.ok()) r = CrossProcessRows(api, limits, fake, &found);
  if (r.ok()) r = StagingRows(api, &found);
  if (r.ok()) r = CancelRows(api, fake ? &fake_api : nullptr, &found);
  if (r.ok()) PrintVerdicts(found);
  if (!r.ok()) {
    std::printf("gpu_bench: FAIL %s\n", r.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace lldd

int main(int argc, char** argv) { return lldd::Main(argc, argv); }
