#include "transport/shm/cross_memory.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>

#include "common/split_evenly.h"
#include "memory/parallel_copy.h"

namespace lldd {
namespace {
constexpr size_t kIovBatch = 1024;  // IOV_MAX
}

Result CrossMemoryTransfer(pid_t pid, const std::vector<RemoteCopy>& copies, bool write) {
  size_t index = 0;
  uint64_t done_in_first = 0;  // bytes of copies[index] already moved
  iovec local[kIovBatch];
  iovec remote[kIovBatch];
  while (index < copies.size()) {
    size_t n = 0;
    for (size_t i = index; i < copies.size() && n < kIovBatch; ++i, ++n) {
      uint64_t skip = i == index ? done_in_first : 0;
      local[n] = {copies[i].local + skip, copies[i].length - skip};
      remote[n] = {reinterpret_cast<void*>(copies[i].remote_address + skip), copies[i].length - skip};
    }
    ssize_t moved = write ? process_vm_writev(pid, local, n, remote, n, 0) : process_vm_readv(pid, local, n, remote, n, 0);
    if (moved < 0) {
      if (errno == EINTR) continue;
      if (errno == EPERM || errno == ENOSYS)
        return Result::FeatureNotEnabled(Msg("cross-memory attach denied: ", std::strerror(errno)));
      if (errno == ESRCH) return Result::LinkFailed("peer process is gone");
      return Result::Failed(Msg(write ? "process_vm_writev" : "process_vm_readv", ": ", std::strerror(errno)));
    }
    if (moved == 0) return Result::Failed("cross-memory attach made no progress");
    // A partial transfer stops at an iovec boundary or inside one.
    uint64_t left = static_cast<uint64_t>(moved);
    while (left > 0 && index < copies.size()) {
      uint64_t rest = copies[index].length - done_in_first;
      if (left < rest) {
        done_in_first += left;
        left = 0;
      } else {
        left -= rest;
        ++index;
        done_in_first = 0;
      }
    }
  }
  return Result::Ok();
}

}  // namespace lldd

namespace lldd {

Result ParallelCrossMemoryTransfer(pid_t pid, const std::vector<RemoteCopy>& copies, bool write,
                                   unsigned max_threads) {
  uint64_t total = 0;
  for (const RemoteCopy& c : copies) total += c.length;
  unsigned threads = CopyThreadCount();
  if (max_threads != 0) threads = std::min(threads, max_threads);
  threads = static_cast<unsigned>(std::min<uint64_t>(threads, total / (kParallelCopyThreshold / 4)));
  if (threads <= 1) return CrossMemoryTransfer(pid, copies, write);
  auto parts = SplitEvenly(copies, threads, [](RemoteCopy& c, uint64_t n) {
    c.local += n;
    c.remote_address += n;
  });
  std::mutex mu;
  Result first_error;
  std::vector<std::function<void()>> jobs;
  for (auto& p : parts) {
    if (p.empty()) continue;
    jobs.push_back([&, &p = p] {
      Result r = CrossMemoryTransfer(pid, p, write);
      std::lock_guard<std::mutex> lock(mu);
      if (!r.ok() && first_error.ok()) first_error = r;
    });
  }
  RunOnCopyThreads(jobs);
  return first_error;
}

}  // namespace lldd
