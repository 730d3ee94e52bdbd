#include "bench/memcpy_baseline.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
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

// process_vm_readv of `copies` (sources in `owner`) in batches of IOV_MAX.
bool ReadFrom(pid_t owner, const std::vector<Copy>& copies) {
  constexpr size_t kBatch = 1024;
  iovec local[kBatch];
  iovec remote[kBatch];
  for (size_t i = 0; i < copies.size(); i += kBatch) {
    size_t n = std::min(kBatch, copies.size() - i);
    size_t want = 0;
    for (size_t k = 0; k < n; ++k) {
      local[k] = {copies[i + k].dst, copies[i + k].length};
      remote[k] = {const_cast<uint8_t*>(copies[i + k].src), copies[i + k].length};
      want += copies[i + k].length;
    }
    if (process_vm_readv(owner, local, n, remote, n, 0) != static_cast<ssize_t>(want)) return false;
  }
  return true;
}

// The source pages live on in a forked child (the same addresses, shared
// copy-on-write), which this process then reads with cross-memory attach.
double MeasureCrossMemoryAttach(const std::vector<Copy>& copies, const Config& config, const LoopLimits& limits) {
  pid_t child = fork();
  if (child < 0) return 0;
  if (child == 0) {
    for (;;) pause();
  }
  double gbps = 0;
  if (ReadFrom(child, copies)) {
    LoopResult r = RunTimed(limits, Clock::now(), [&] { return ReadFrom(child, copies); });
    gbps = lldd_tools::GigabytesPerSecond(static_cast<double>(config.bytes_per_call()) * static_cast<double>(r.calls),
                                          Seconds(r.start, r.end));
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  return gbps;
}

}  // namespace

bool MeasureMemcpy(const Config& config, const BlockLists& lists, const LoopLimits& limits, MemcpyResult* out,
                   std::string* error) {
  const uint64_t row = config.block_bytes;
  const uint64_t tensor_bytes = config.rows() * row;
  Buffer src(tensor_bytes * config.tensors);
  Buffer dst(tensor_bytes * config.tensors);
  if (!src.data() || !dst.data()) {
    *error = "memcpy baseline: cannot allocate 2 x " + lldd_tools::FormatBytes(tensor_bytes * config.tensors);
    return false;
  }
  std::vector<Copy> copies;
  for (uint32_t t = 0; t < config.tensors; ++t)
    for (size_t i = 0; i < lists.src.size(); ++i)
      copies.push_back({dst.data() + t * tensor_bytes + lists.dst[i] * row, src.data() + t * tensor_bytes + lists.src[i] * row, row});

  CopyAll(copies);
  LoopResult r = RunTimed(limits, Clock::now(), [&] {
    CopyAll(copies);
    return true;
  });
  const double call_bytes = static_cast<double>(config.bytes_per_call());
  out->one_thread.gbps = lldd_tools::GigabytesPerSecond(call_bytes * static_cast<double>(r.calls), Seconds(r.start, r.end));
  out->one_thread.p50_us = r.latency_us.Percentile(50);
  out->one_thread.p99_us = r.latency_us.Percentile(99);

  out->cma_gbps = MeasureCrossMemoryAttach(copies, config, limits);

  // No barrier per call: each thread repeats its share for the time budget,
  // so the figure is bandwidth, not synchronisation.
  const unsigned n = std::clamp(std::thread::hardware_concurrency(), 1U, 16U);
  const auto shares = Deal(copies, n);
  std::vector<uint64_t> bytes(n, 0);
  std::vector<Clock::time_point> ends(n);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t)
    threads.emplace_back([&, t] {
      uint64_t share_bytes = 0;
      for (const Copy& c : shares[t]) share_bytes += c.length;
      LoopResult lr = RunTimed(limits, start, [&] {
        CopyAll(shares[t]);
        return true;
      });
      bytes[t] = share_bytes * lr.calls;
      ends[t] = lr.end;
    });
  for (auto& t : threads) t.join();
  uint64_t total = 0;
  for (uint64_t b : bytes) total += b;
  out->all_cores_gbps = lldd_tools::GigabytesPerSecond(static_cast<double>(total),
                                                       Seconds(start, *std::max_element(ends.begin(), ends.end())));
  out->all_cores_threads = n;
  return true;
}

}  // namespace lldd_bench
