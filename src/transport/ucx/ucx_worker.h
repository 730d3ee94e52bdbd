// One UCX context and worker per LlmDataDist instance, and the thread that
// progresses it.
//
// Every call into the worker (posting gets and puts, creating and closing
// endpoints, unpacking remote keys, mapping memory) happens under mutex(),
// so the worker runs in UCS_THREAD_MODE_SERIALIZED and UCX's own locking
// never matters. Completions run only inside ucp_worker_progress, which only
// the progress thread calls, under the same mutex: an API thread that holds
// the mutex knows no completion callback runs meanwhile.
//
// The progress thread (as NIXL's): progress until idle, ucp_worker_arm, then
// poll() on the worker's event fd, our wake-up eventfd, and a timer (UCX
// transports do not all raise events, and an armed fd can miss one). While
// any transfer is waiting (BeginBusy/EndBusy) it spins instead of sleeping,
// so a completion is seen within microseconds.
#ifndef LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_WORKER_H_
#define LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_WORKER_H_

#include <ucp/api/ucp.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"

namespace lldd {

// What an endpoint's error handler reports (the worker keeps these alive
// for its whole life, so a late error callback never touches freed memory).
struct UcxEpSlot {
  std::atomic<int> status{UCS_OK};
};

class UcxWorker {
 public:
  // Reads the UCX configuration (UCX_TLS and friends apply), creates the
  // context and the worker, and starts the progress thread.
  static Result Create(std::shared_ptr<UcxWorker>* out);
  ~UcxWorker();
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  std::mutex& mutex() { return mu_; }
  ucp_context_h context() const { return context_; }
  ucp_worker_h worker() const { return worker_; }
  const std::vector<uint8_t>& address() const { return address_; }
  // The transport resources UCX selected (after UCX_TLS), e.g.
  // "tcp/lo posix/memory cma/memory", and whether one of them is RDMA
  // (InfiniBand/RoCE verbs: rc, dc, ud; or rdmacm).
  const std::string& resources() const { return resources_; }
  bool has_rdma() const { return has_rdma_; }

  // An error slot for a new endpoint (lives as long as the worker).
  UcxEpSlot* NewEpSlot();

  // A transfer starts / ends waiting for completions: the progress thread
  // spins while any does.
  void BeginBusy();
  void EndBusy();
  // Wakes the progress thread (after posting work while it may sleep).
  void Wake();
  // Stops the progress thread; idempotent. The worker itself lives until
  // the last owner (endpoints, registered regions) lets go.
  void StopProgress();

  // Exposed for tests: "rc_mlx5/mlx5_0:1 tcp/lo" -> true.
  static bool ResourcesHaveRdma(const std::string& resources);
  // Tests only: runs between ucp_init and ucp_worker_create (nullptr: nothing).
  static void SetBetweenInitAndWorkerForTest(std::function<void()> hook);

 private:
  UcxWorker() = default;
  // ucp_init and ucp_worker_create, listing the devices again when one
  // went away in between.
  Result OpenContextAndWorker();
  void Run();

  std::mutex mu_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int event_fd_ = -1;  // the worker's, owned by UCX
  int wake_fd_ = -1;   // ours (eventfd)
  std::vector<uint8_t> address_;
  std::string resources_;
  bool has_rdma_ = false;
  std::atomic<int> busy_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex slots_mu_;
  std::deque<UcxEpSlot> slots_;
};

// A registered host region: its memory handle and packed remote key.
// Unmaps on destruction (the region table drops it when the region goes).
struct UcxRegionData {
  std::shared_ptr<UcxWorker> worker;
  ucp_mem_h memh = nullptr;
  uint64_t base = 0;
  uint64_t length = 0;
  std::vector<uint8_t> rkey;
  ~UcxRegionData();
};

// Maps [base, base+length) for remote access and packs its key.
Result UcxMapRegion(const std::shared_ptr<UcxWorker>& worker, void* base, uint64_t length,
                    std::shared_ptr<UcxRegionData>* out);

std::string UcxStatusText(ucs_status_t status);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_WORKER_H_
