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
  for (const GpuCopyRun& run : merged) {
    if (run.length >= limits.copy_engine_min) {
      plan.engine_runs.push_back(run);
      continue;
    }
    for (uint64_t off = 0; off < run.length; off += piece)
      plan.kernel_runs.push_back({run.dst + off, run.src + off, std::min(piece, run.length - off)});
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
  GpuEvent event = nullptr;
  GpuCopyRun* host_table = nullptr;    // pinned
  GpuCopyRun* device_table = nullptr;  // what the kernel reads
  uint32_t capacity = 0;
  std::vector<std::shared_ptr<const void>> keep_alive;
};

GpuCopier::GpuCopier(GpuApi& api, int device, GpuCopyLimits limits) : api_(api), device_(device), limits_(limits) {}

GpuCopier::~GpuCopier() {
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
  for (Lane* lane : done) {
    lane->keep_alive.clear();
    ReturnLane(lane, true);
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
  *out = lane;
  return Result::Ok();
}

void GpuCopier::ReturnLane(Lane* lane, bool finished) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished) {
    lane->keep_alive.clear();
    idle_.push_back(lane);
  } else {
    stuck_.push_back(lane);
  }
}

Result GpuCopier::Submit(const std::vector<GpuCopy>& copies, std::vector<std::shared_ptr<const void>> keep_alive,
                         std::unique_ptr<Job>* job) {
  GpuCopyPlan plan = PlanGpuCopies(copies, limits_);
  if (plan.kernel_runs.size() > UINT32_MAX / 2) return Result::ParamInvalid("too many GPU copies in one call");
  GpuDeviceGuard on_device(api_, device_);  // the caller's thread keeps its own device
  LDD_RETURN_IF_ERROR(on_device.status());
  Lane* lane = nullptr;
  LDD_RETURN_IF_ERROR(TakeLane(static_cast<uint32_t>(plan.kernel_runs.size()), &lane));
  auto finish_failed = [&](const Result& r) {
    // Whatever was queued may still run: treat the lane as stuck.
    lane->keep_alive = std::move(keep_alive);
    (void)api_.EventRecord(lane->event, lane->stream);
    ReturnLane(lane, false);
    return r;
  };
  Result r;
  if (!plan.kernel_runs.empty()) {
    uint32_t n = static_cast<uint32_t>(plan.kernel_runs.size());
    std::memcpy(lane->host_table, plan.kernel_runs.data(), n * sizeof(GpuCopyRun));
    api_.KernelAddresses(device_, lane->host_table, n);
    r = api_.MemcpyAsync(lane->device_table, lane->host_table, n * sizeof(GpuCopyRun), lane->stream);
    if (r.ok()) r = api_.LaunchCopyRuns(lane->device_table, n, lane->stream);
    if (!r.ok()) return finish_failed(r);
  }
  for (const GpuCopyRun& run : plan.engine_runs) {
    r = api_.MemcpyAsync(reinterpret_cast<void*>(run.dst), reinterpret_cast<const void*>(run.src), run.length,
                         lane->stream);
    if (!r.ok()) return finish_failed(r);
  }
  r = api_.EventRecord(lane->event, lane->stream);
  if (!r.ok()) return finish_failed(r);
  lane->keep_alive = std::move(keep_alive);
  auto j = std::unique_ptr<Job>(new Job());
  j->copier_ = this;
  j->lane_ = lane;
  *job = std::move(j);
  return Result::Ok();
}

Result GpuCopier::Wait(std::unique_ptr<Job> job, Deadline deadline) {
  Lane* lane = job->lane_;
  job->lane_ = nullptr;
  Result r = WaitGpuEvent(api_, lane->event, deadline);
  if (r.code() == llm_datadist::LLM_TIMEOUT) {
    LDD_LOG(Warn) << "GPU copy on device " << device_ << " outlived its deadline; its stream is retired";
    ReturnLane(lane, false);
    return r;
  }
  // Finished, or failed (a sticky CUDA error: nothing more will run there).
  ReturnLane(lane, true);
  return r;
}

GpuCopier::Job::~Job() {
  if (lane_ == nullptr) return;
  // Never waited for: keep it until the GPU says it is done.
  copier_->ReturnLane(lane_, false);
}

Result GpuCopier::Run(const std::vector<GpuCopy>& copies, Deadline deadline,
                      std::vector<std::shared_ptr<const void>> keep_alive) {
  std::unique_ptr<Job> job;
  LDD_RETURN_IF_ERROR(Submit(copies, std::move(keep_alive), &job));
  return Wait(std::move(job), deadline);
}

}  // namespace lldd
