#include "gpu/gpu_copier.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/logging.h"
#include "gpu/gpu_device_guard.h"

namespace lldd {

GpuCopyPlan PlanGpuCopies(const std::vector<GpuCopy>& copies, const GpuCopyLimits& limits) {
  GpuCopyPlan plan;
  std::vector<GpuCopyRun> merged;
  merged.reserve(copies.size());
  for (const GpuCopy& c : copies) {
    if (c.length == 0) continue;
    uint64_t dst = reinterpret_cast<uint64_t>(c.dst);
    uint64_t src = reinterpret_cast<uint64_t>(c.src);
    if (!merged.empty()) {
      GpuCopyRun& last = merged.back();
      if (last.dst + last.length == dst && last.src + last.length == src) {
        last.length += c.length;
        plan.bytes += c.length;
        continue;
      }
    }
    merged.push_back({dst, src, c.length});
    plan.bytes += c.length;
  }
  plan.merged_runs = merged.size();
  const uint64_t piece = std::max<uint64_t>(limits.piece, 16);
  const uint64_t chunk = std::max<uint64_t>(limits.engine_chunk, 16);
  for (const GpuCopyRun& run : merged) {
    const bool engine = run.length >= limits.copy_engine_min;
    const uint64_t cut = engine ? chunk : piece;
    auto& out = engine ? plan.engine_runs : plan.kernel_runs;
    for (uint64_t off = 0; off < run.length; off += cut)
      out.push_back({run.dst + off, run.src + off, std::min(cut, run.length - off)});
  }
  return plan;
}

Result WaitGpuEvent(GpuApi& api, GpuEvent event, Deadline deadline) {
  // Small batches finish in microseconds: spin (yielding) first, then sleep.
  for (int polls = 0;; ++polls) {
    Result r = api.EventQuery(event);
    if (r.code() != llm_datadist::LLM_TIMEOUT) return r;
    if (deadline.Expired()) return Result::Timeout("GPU copy did not finish before the deadline");
    if (polls < 2000)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(polls < 20000 ? 20 : 200));
  }
}

struct GpuCopier::Lane {
  GpuStream stream = nullptr;
  GpuEvent event = nullptr;            // recorded after the last work queued
  GpuCopyRun* host_table = nullptr;    // pinned
  GpuCopyRun* device_table = nullptr;  // what the kernel reads
  uint32_t capacity = 0;
  volatile uint32_t* cancel = nullptr;  // pinned; the kernel's blocks read it
  const volatile uint32_t* cancel_at = nullptr;  // its address as the kernel sees it
  std::vector<GpuEvent> chunk_events;   // one per copy-engine chunk in the window
  std::vector<GpuCopyRun> engine;       // this call's copy-engine chunks
  size_t queued = 0;                    // of them, handed to the stream
  std::vector<std::shared_ptr<const void>> keep_alive;
};

GpuCopier::GpuCopier(GpuApi& api, int device, GpuCopyLimits limits) : api_(api), device_(device), limits_(limits) {}

GpuCopier::~GpuCopier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  reap_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  std::vector<Lane*> lanes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lanes.swap(idle_);
    for (Lane* lane : stuck_) {
      // Destroying a stream with work queued is allowed (CUDA finishes the
      // work first); the memory it touches stays alive with keep_alive only
      // if we wait, so wait a bounded time and leak the rest.
      if (WaitGpuEvent(api_, lane->event, Deadline::AfterMillis(1000)).ok())
        lanes.push_back(lane);
      else
        LDD_LOG(Warn) << "a GPU copy stream is still stuck at shutdown; leaving it";
    }
    stuck_.clear();
  }
  for (Lane* lane : lanes) DestroyLane(lane);
}

void GpuCopier::DestroyLane(Lane* lane) {
  if (lane->device_table != nullptr) api_.DeviceFree(lane->device_table);
  if (lane->host_table != nullptr) api_.HostFreePinned(lane->host_table);
  if (lane->cancel != nullptr) api_.HostFreePinned(const_cast<uint32_t*>(lane->cancel));
  for (GpuEvent e : lane->chunk_events) api_.EventDestroy(e);
  if (lane->event != nullptr) api_.EventDestroy(lane->event);
  if (lane->stream != nullptr) api_.StreamDestroy(lane->stream);
  delete lane;
}

void GpuCopier::ReapStuck() {
  std::vector<Lane*> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = stuck_.begin(); it != stuck_.end();) {
      if (api_.EventQuery((*it)->event).ok()) {
        done.push_back(*it);
        it = stuck_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Lane* lane : done) ReturnLane(lane, true);
}

// Nobody else may ever ask again after a timeout: retired lanes must still
// let go of what they keep alive (a region lease blocks its removal).
void GpuCopier::Reap() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (stuck_.empty()) {
      reap_.wait(lock);
      continue;
    }
    lock.unlock();
    ReapStuck();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    lock.lock();
  }
}

size_t GpuCopier::stuck_lanes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stuck_.size();
}

Result GpuCopier::TakeLane(uint32_t runs, Lane** out) {
  ReapStuck();
  Lane* lane = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      lane = idle_.back();
      idle_.pop_back();
    }
  }
  if (lane == nullptr) {
    lane = new Lane();
    Result r = api_.StreamCreate(&lane->stream);
    if (r.ok()) r = api_.EventCreate(&lane->event);
    void* flag = nullptr;
    if (r.ok()) r = api_.HostAllocPinned(sizeof(uint32_t), &flag);
    lane->cancel = static_cast<volatile uint32_t*>(flag);
    GpuCopyRun at{reinterpret_cast<uint64_t>(flag), reinterpret_cast<uint64_t>(flag), sizeof(uint32_t)};
    api_.KernelAddresses(device_, &at, 1);
    lane->cancel_at = reinterpret_cast<const volatile uint32_t*>(at.src);
    for (uint32_t i = 0; r.ok() && i < std::max<uint32_t>(limits_.engine_window, 1); ++i) {
      GpuEvent e = nullptr;
      r = api_.EventCreate(&e);
      if (r.ok()) lane->chunk_events.push_back(e);
    }
    if (!r.ok()) {
      DestroyLane(lane);
      return r;
    }
  }
  if (lane->capacity < runs) {
    if (lane->device_table != nullptr) api_.DeviceFree(lane->device_table);
    if (lane->host_table != nullptr) api_.HostFreePinned(lane->host_table);
    lane->device_table = nullptr;
    lane->host_table = nullptr;
    lane->capacity = 0;
    uint32_t capacity = std::max<uint32_t>(runs, 1024);
    void* host = nullptr;
    void* dev = nullptr;
    Result r = api_.HostAllocPinned(uint64_t{capacity} * sizeof(GpuCopyRun), &host);
    if (r.ok()) {
      lane->host_table = static_cast<GpuCopyRun*>(host);
      r = api_.DeviceAlloc(uint64_t{capacity} * sizeof(GpuCopyRun), &dev);
    }
    if (!r.ok()) {
      DestroyLane(lane);
      return r;
    }
    lane->device_table = static_cast<GpuCopyRun*>(dev);
    lane->capacity = capacity;
  }
  __atomic_store_n(lane->cancel, 0U, __ATOMIC_RELAXED);  // the lane's earlier work has ended
  lane->engine.clear();
  lane->queued = 0;
  *out = lane;
  return Result::Ok();
}

void GpuCopier::ReturnLane(Lane* lane, bool finished) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished) {
    lane->keep_alive.clear();
    idle_.push_back(lane);
    return;
  }
  stuck_.push_back(lane);
  if (!reaper_.joinable()) reaper_ = std::thread([this] { Reap(); });
  reap_.notify_one();
}

// The kernel, then the first window of copy-engine chunks.
Result GpuCopier::Queue(Lane* lane, const GpuCopyPlan& plan) {
  if (!plan.kernel_runs.empty()) {
    uint32_t n = static_cast<uint32_t>(plan.kernel_runs.size());
    std::memcpy(lane->host_table, plan.kernel_runs.data(), n * sizeof(GpuCopyRun));
    api_.KernelAddresses(device_, lane->host_table, n);
    LDD_RETURN_IF_ERROR(
        api_.MemcpyAsync(lane->device_table, lane->host_table, n * sizeof(GpuCopyRun), lane->stream));
    LDD_RETURN_IF_ERROR(api_.LaunchCopyRuns(lane->device_table, n, lane->cancel_at, lane->stream));
  }
  lane->engine = plan.engine_runs;
  LDD_RETURN_IF_ERROR(Pump(lane));
  return api_.EventRecord(lane->event, lane->stream);
}

// Copy engines cannot be stopped mid-copy, so they get work a window at a
// time: a deadline then leaves at most the window running. (Runs on the
// caller's thread whatever its current device: CUDA takes copies and event
// records on another device's stream; only launches need the device.)
Result GpuCopier::Pump(Lane* lane) {
  const size_t window = lane->chunk_events.size();
  bool queued_more = false;
  while (lane->queued < lane->engine.size()) {
    GpuEvent slot = lane->chunk_events[lane->queued % window];
    if (lane->queued >= window) {
      Result q = api_.EventQuery(slot);  // the chunk `window` back has ended?
      if (q.code() == llm_datadist::LLM_TIMEOUT) break;
      LDD_RETURN_IF_ERROR(q);
    }
    const GpuCopyRun& run = lane->engine[lane->queued];
    LDD_RETURN_IF_ERROR(api_.MemcpyAsync(reinterpret_cast<void*>(run.dst), reinterpret_cast<const void*>(run.src),
                                         run.length, lane->stream));
    LDD_RETURN_IF_ERROR(api_.EventRecord(slot, lane->stream));
    ++lane->queued;
    queued_more = true;
  }
  if (queued_more) return api_.EventRecord(lane->event, lane->stream);
  return Result::Ok();
}

// Cancels what has not started and waits (bounded) for what has.
Result GpuCopier::Stop(Lane* lane, Result why) {
  // Pinned (coherent) host memory: blocks that start from now on see it.
  __atomic_store_n(lane->cancel, 1U, __ATOMIC_RELEASE);
  lane->engine.resize(lane->queued);
  (void)api_.EventRecord(lane->event, lane->stream);  // after everything queued
  // A GPU that already left a lane running past its drain is not waited
  // for again: the calls of one pipeline stop within one drain, not many.
  const bool hung = stuck_lanes() != 0;
  Result drained = WaitGpuEvent(api_, lane->event, Deadline::AfterMillis(hung ? 0 : limits_.drain_ms));
  if (drained.code() == llm_datadist::LLM_TIMEOUT) {
    LDD_LOG(Warn) << "a stopped GPU copy on device " << device_ << " is still running after " << limits_.drain_ms
                  << " ms; its stream is retired and what it touches stays alive until it ends";
    ReturnLane(lane, false);
  } else {
    ReturnLane(lane, true);
  }
  return why;
}

Result GpuCopier::Submit(const std::vector<GpuCopy>& copies, std::vector<std::shared_ptr<const void>> keep_alive,
                         std::unique_ptr<Job>* job) {
  GpuCopyPlan plan = PlanGpuCopies(copies, limits_);
  if (plan.kernel_runs.size() > UINT32_MAX / 2) return Result::ParamInvalid("too many GPU copies in one call");
  GpuDeviceGuard on_device(api_, device_);  // the caller's thread keeps its own device
  LDD_RETURN_IF_ERROR(on_device.status());
  Lane* lane = nullptr;
  LDD_RETURN_IF_ERROR(TakeLane(static_cast<uint32_t>(plan.kernel_runs.size()), &lane));
  lane->keep_alive = std::move(keep_alive);
  Result r = Queue(lane, plan);
  if (!r.ok()) return Stop(lane, r);  // whatever was queued may run
  auto j = std::unique_ptr<Job>(new Job());
  j->copier_ = this;
  j->lane_ = lane;
  *job = std::move(j);
  return Result::Ok();
}

Result GpuCopier::Wait(std::unique_ptr<Job> job, Deadline deadline) {
  Lane* lane = job->lane_;
  job->lane_ = nullptr;
  // Small batches finish in microseconds: spin (yielding) first, then sleep.
  for (int polls = 0;; ++polls) {
    Result r = Pump(lane);
    if (r.ok()) r = api_.EventQuery(lane->event);
    if (r.ok() && lane->queued == lane->engine.size()) break;
    if (!r.ok() && r.code() != llm_datadist::LLM_TIMEOUT) {
      // A sticky CUDA error: nothing more runs on this context.
      ReturnLane(lane, true);
      return r;
    }
    if (deadline.Expired())
      return Stop(lane, Result::Timeout(Msg("GPU copy on device ", device_, " did not finish before the deadline")));
    if (polls < 2000)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(polls < 20000 ? 20 : 200));
  }
  ReturnLane(lane, true);
  return Result::Ok();
}

GpuCopier::Job::~Job() {
  if (lane_ == nullptr) return;
  // Never waited for (an error path of the caller): stop it now.
  (void)copier_->Stop(lane_, Result::Ok());
}

Result GpuCopier::Run(const std::vector<GpuCopy>& copies, Deadline deadline,
                      std::vector<std::shared_ptr<const void>> keep_alive) {
  std::unique_ptr<Job> job;
  LDD_RETURN_IF_ERROR(Submit(copies, std::move(keep_alive), &job));
  return Wait(std::move(job), deadline);
}

}  // namespace lldd
