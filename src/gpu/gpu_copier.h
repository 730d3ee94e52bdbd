// Moves a batch of {src, dst, length} copies with one kernel launch on a
// stream of ours, and waits for it within a deadline.
//
// Per-block copies cost about 5 us each whatever API issues them
// (tools/gpu_probe): the batch is merged (neighbouring copies whose source
// and destination both continue become one run), cut into pieces so that a
// few long runs still spread over every SM, and handed to the gather
// kernel as one table; only very long runs go to the copy engines.
//
// Deadlines: no byte lands after a call returns. At its deadline a call
// raises its lane's cancel flag, which every thread block of the kernel
// reads before it starts (so only blocks already running, one piece of at
// most `piece` bytes each, go on), queues no further copy-engine chunk
// (at most `engine_window` chunks of `engine_chunk` bytes are queued at
// once), and waits up to `drain_ms` for what already runs before it
// returns LLM_TIMEOUT. The overrun past the deadline is therefore the time
// the GPU takes for those pieces and chunks: tens of microseconds between
// GPU buffers, a few milliseconds when one side is host memory over PCIe.
// Only a GPU that does not finish even that within drain_ms (hung, or
// starved by other work; while one lane is retired so, others stopped meanwhile
// are retired without waiting) leaves the lane retired, never reused: it keeps
// what it copies from and into alive (keep_alive: buffers, imports, the
// caller's region lease) until the GPU is done with it, and a reaper
// thread takes it back then.
//
// Thread-safe: each call takes a lane (stream, events, table, flag) of its own.
#ifndef LLM_DATADIST_SRC_GPU_GPU_COPIER_H_
#define LLM_DATADIST_SRC_GPU_GPU_COPIER_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "gpu/gpu_api.h"

namespace lldd {

struct GpuCopy {
  uint8_t* dst = nullptr;
  const uint8_t* src = nullptr;
  uint64_t length = 0;
};

struct GpuCopyLimits {
  uint64_t piece = 256U << 10;           // longest kernel table entry
  uint64_t copy_engine_min = 64U << 20;  // runs this long use cudaMemcpyAsync,
  uint64_t engine_chunk = 16U << 20;     // in chunks this long,
  uint32_t engine_window = 4;            // this many queued at a time
  int64_t drain_ms = 1000;               // a cancelled call's wait for running work
};

struct GpuCopyPlan {
  std::vector<GpuCopyRun> kernel_runs;
  std::vector<GpuCopyRun> engine_runs;  // chunks of at most engine_chunk
  uint64_t bytes = 0;
  size_t merged_runs = 0;  // runs after merging, before cutting
};

// Merges neighbours in the given order and cuts; zero-length copies vanish.
GpuCopyPlan PlanGpuCopies(const std::vector<GpuCopy>& copies, const GpuCopyLimits& limits = {});

// Polls `event` until it completes, fails, or the deadline passes (LLM_TIMEOUT).
Result WaitGpuEvent(GpuApi& api, GpuEvent event, Deadline deadline);

class GpuCopier {
 public:
  class Job;

  GpuCopier(GpuApi& api, int device, GpuCopyLimits limits = {});
  ~GpuCopier();
  GpuCopier(const GpuCopier&) = delete;
  GpuCopier& operator=(const GpuCopier&) = delete;

  // Copies and waits. `keep_alive` stays referenced until the GPU is done.
  // LLM_TIMEOUT at the deadline, after stopping the copy (see above).
  Result Run(const std::vector<GpuCopy>& copies, Deadline deadline,
             std::vector<std::shared_ptr<const void>> keep_alive = {});

  // Asynchronous form (the staging pipeline): Submit, then Wait. A Job
  // dropped without Wait is stopped like a call at its deadline.
  Result Submit(const std::vector<GpuCopy>& copies, std::vector<std::shared_ptr<const void>> keep_alive,
                std::unique_ptr<Job>* job);
  Result Wait(std::unique_ptr<Job> job, Deadline deadline);

  // Lanes whose work outlived its deadline and is still running.
  size_t stuck_lanes() const;
  // Takes back retired lanes whose work has ended (releasing what they kept
  // alive). Runs at every Submit and on the reaper thread while any lane is
  // retired; a revocation calls it while it waits.
  void ReapStuck();
  int device() const { return device_; }

 private:
  struct Lane;
  Result TakeLane(uint32_t runs, Lane** out);
  Result Queue(Lane* lane, const GpuCopyPlan& plan);
  Result Pump(Lane* lane);
  Result Stop(Lane* lane, Result why);
  void ReturnLane(Lane* lane, bool finished);
  void DestroyLane(Lane* lane);
  void Reap();

  GpuApi& api_;
  const int device_;
  const GpuCopyLimits limits_;
  mutable std::mutex mu_;
  std::vector<Lane*> idle_;
  std::vector<Lane*> stuck_;
  std::condition_variable reap_;
  bool stopping_ = false;
  std::thread reaper_;  // started the first time a lane is retired
};

class GpuCopier::Job {
 public:
  ~Job();

 private:
  friend class GpuCopier;
  GpuCopier* copier_ = nullptr;
  Lane* lane_ = nullptr;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_GPU_COPIER_H_
