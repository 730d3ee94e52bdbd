#include "bench/memcpy_baseline.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "common/units.h"

namespace lldd_bench {
namespace {

// Pre-faulted anonymous memory: the baseline measures copying, not the
// kernel handing out fresh pages.
class Buffer {
 public:
  explicit Buffer(size_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    if (data_) std::memset(data_, 0x3C, bytes);
  }
  ~Buffer() {
    if (data_) ::munmap(data_, bytes_);
  }
  uint8_t* data() const { return data_; }

 private:
  size_t bytes_;
  uint8_t* data_;
};

struct Copy {
  uint8_t* dst;
  const uint8_t* src;
  size_t length;
};

void CopyAll(const std::vector<Copy>& copies) {
  for (const Copy& c : copies) std::memcpy(c.dst, c.src, c.length);
}

// Shares of one call's copies for `n` threads: whole ranges dealt round
// robin, or, with fewer ranges than threads, each range cut in n pieces.
std::vector<std::vector<Copy>> Deal(const std::vector<Copy>& copies, unsigned n) {
  std::vector<std::vector<Copy>> shares(n);
  if (copies.size() >= n) {
    for (size_t i = 0; i < copies.size(); ++i) shares[i % n].push_back(copies[i]);
    return shares;
  }
  for (const Copy& c : copies) {
    const size_t piece = (c.length + n - 1) / n;
    for (unsigned t = 0; t < n && t * piece < c.length; ++t)
      shares[t].push_back({c.dst + t * piece, c.src + t * piece, std::min(piece, c.length - t * piece)});
  }
  return shares;
}

// Cross-memory attach of `copies` in batches of IOV_MAX: a pull reads the
// sources out of `peer` (process_vm_readv), a push writes the destinations
// into it (process_vm_writev). The peer's copy has the same addresses.
bool Attach(pid_t peer, bool push, const std::vector<Copy>& copies) {
  constexpr size_t kBatch = 1024;
  iovec local[kBatch];
  iovec remote[kBatch];
  for (size_t i = 0; i < copies.size(); i += kBatch) {
    size_t n = std::min(kBatch, copies.size() - i);
    size_t want = 0;
    for (size_t k = 0; k < n; ++k) {
      const Copy& c = copies[i + k];
      local[k] = {push ? const_cast<uint8_t*>(c.src) : c.dst, c.length};
      remote[k] = {push ? c.dst : const_cast<uint8_t*>(c.src), c.length};
      want += c.length;
    }
    const ssize_t done = push ? process_vm_writev(peer, local, n, remote, n, 0) : process_vm_readv(peer, local, n, remote, n, 0);
    if (done != static_cast<ssize_t>(want)) return false;
  }
  return true;
}

// Runs `share(t)` on `n` threads, each for the time budget with no barrier
// per call: the figure is bandwidth, not synchronisation.
template <typename F>
BaselineResult ParallelBandwidth(const std::vector<std::vector<Copy>>& shares, const LoopLimits& limits, F&& copy) {
  const unsigned n = static_cast<unsigned>(shares.size());
  std::vector<uint64_t> bytes(n, 0);
  std::vector<Clock::time_point> ends(n);
  std::atomic<bool> ok{true};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t)
    threads.emplace_back([&, t] {
      uint64_t share_bytes = 0;
      for (const Copy& c : shares[t]) share_bytes += c.length;
      LoopResult lr = RunTimed(limits, start, [&] { return copy(shares[t]); });
      if (!lr.ok) ok = false;
      bytes[t] = share_bytes * lr.calls;
      ends[t] = lr.end;
    });
  for (auto& t : threads) t.join();
  BaselineResult r;
  r.ways = n;
  if (!ok) return r;
  uint64_t total = 0;
  for (uint64_t b : bytes) total += b;
  r.gbps = lldd_tools::GigabytesPerSecond(static_cast<double>(total), Seconds(start, *std::max_element(ends.begin(), ends.end())));
  return r;
}

BaselineResult OneThread(const Config& config, const LoopLimits& limits, const std::function<bool()>& call) {
  BaselineResult out;
  out.ways = 1;
  if (!call()) return out;  // untimed: warms caches and TLBs
  LoopResult r = RunTimed(limits, Clock::now(), call);
  if (!r.ok) return out;
  out.gbps = lldd_tools::GigabytesPerSecond(static_cast<double>(config.bytes_per_call()) * static_cast<double>(r.calls),
                                            Seconds(r.start, r.end));
  out.p50_us = r.latency_us.Percentile(50);
  out.p99_us = r.latency_us.Percentile(99);
  return out;
}

}  // namespace

bool MeasureMemoryLimits(const Config& config, const BlockLists& lists, const LoopLimits& limits, unsigned all_cores,
                         bool memcpy, bool cma, MemoryLimits* out, std::string* error) {
  const uint64_t row = config.block_bytes;
  const uint64_t tensor_bytes = config.rows() * row;
  Buffer src(tensor_bytes * config.tensors);
  Buffer dst(tensor_bytes * config.tensors);
  if (!src.data() || !dst.data()) {
    *error = "memory baseline: cannot allocate 2 x " + lldd_tools::FormatBytes(tensor_bytes * config.tensors);
    return false;
  }
  std::vector<Copy> copies;
  for (uint32_t t = 0; t < config.tensors; ++t)
    for (size_t i = 0; i < lists.src.size(); ++i)
      copies.push_back({dst.data() + t * tensor_bytes + lists.dst[i] * row, src.data() + t * tensor_bytes + lists.src[i] * row, row});
  const auto shares = Deal(copies, std::max(1U, all_cores));

  if (memcpy) {
    out->memcpy_one = OneThread(config, limits, [&] {
      CopyAll(copies);
      return true;
    });
    out->memcpy_all = ParallelBandwidth(shares, limits, [](const std::vector<Copy>& share) {
      CopyAll(share);
      return true;
    });
  }
  if (cma) {
    // Both buffers live on in a forked child (the same addresses, shared
    // copy-on-write), which this process then reads (pull) or writes
    // (push) with cross-memory attach. The child only waits to be killed.
    const pid_t child = fork();
    if (child < 0) {
      *error = "memory baseline: fork failed";
      return false;
    }
    if (child == 0) {
      for (;;) pause();
    }
    const bool push = config.op == Op::kPush;
    out->cma_one = OneThread(config, limits, [&] { return Attach(child, push, copies); });
    if (out->cma_one.gbps > 0)
      out->cma_all = ParallelBandwidth(shares, limits, [child, push](const std::vector<Copy>& share) { return Attach(child, push, share); });
    else
      out->cma_all.ways = std::max(1U, all_cores);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  }
  return true;
}

}  // namespace lldd_bench
