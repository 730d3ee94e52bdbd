#include "gpu/gpu_copier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>

#include "gpu/fake_gpu_api.h"

namespace lldd {
namespace {

uint8_t* P(uint64_t a) { return reinterpret_cast<uint8_t*>(a); }

TEST(GpuCopyPlan, MergesNeighboursOnly) {
  std::vector<GpuCopy> copies = {
      {P(1000), P(5000), 100}, {P(1100), P(5100), 50},  // continue both: merge
      {P(1150), P(9000), 10},                           // source jumps: new run
      {P(2000), P(9010), 10},                           // destination jumps
      {P(2010), P(9020), 0},                            // empty: vanishes
      {P(2010), P(9020), 6},                            // continues the previous
  };
  GpuCopyPlan plan = PlanGpuCopies(copies);
  ASSERT_EQ(plan.merged_runs, 3U);
  ASSERT_EQ(plan.kernel_runs.size(), 3U);
  EXPECT_EQ(plan.kernel_runs[0].length, 150U);
  EXPECT_EQ(plan.kernel_runs[1].src, 9000U);
  EXPECT_EQ(plan.kernel_runs[2].length, 16U);
  EXPECT_EQ(plan.bytes, 176U);
  EXPECT_TRUE(plan.engine_runs.empty());
}

TEST(GpuCopyPlan, CutsLongRunsAndSendsHugeOnesToCopyEngines) {
  GpuCopyLimits limits;
  limits.piece = 1024;
  limits.copy_engine_min = 1 << 20;
  std::vector<GpuCopy> copies = {{P(0x100000), P(0x900000), 2500}, {P(0x4000000), P(0x8000000), 1 << 20}};
  GpuCopyPlan plan = PlanGpuCopies(copies, limits);
  ASSERT_EQ(plan.kernel_runs.size(), 3U);
  EXPECT_EQ(plan.kernel_runs[1].dst, 0x100000U + 1024);
  EXPECT_EQ(plan.kernel_runs[1].src, 0x900000U + 1024);
  EXPECT_EQ(plan.kernel_runs[2].length, 2500U - 2048);
  ASSERT_EQ(plan.engine_runs.size(), 1U);
  EXPECT_EQ(plan.engine_runs[0].length, 1U << 20);
}

class GpuCopierTest : public ::testing::Test {
 protected:
  FakeGpuApi api;
};

TEST_F(GpuCopierTest, GathersScatteredBlocksInOneLaunch) {
  constexpr uint64_t kBlock = 4096, kBlocks = 64;
  auto* src = static_cast<uint8_t*>(api.Malloc(kBlock * kBlocks));
  auto* dst = static_cast<uint8_t*>(api.Malloc(kBlock * kBlocks));
  for (uint64_t i = 0; i < kBlock * kBlocks; ++i) src[i] = static_cast<uint8_t>(i * 7 + 3);
  std::vector<uint64_t> order(kBlocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(42));
  std::vector<GpuCopy> copies;
  for (uint64_t i = 0; i < kBlocks; ++i) copies.push_back({dst + i * kBlock, src + order[i] * kBlock, kBlock});
  GpuCopier copier(api, 0);
  ASSERT_TRUE(copier.Run(copies, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(api.launches.load(), 1);
  for (uint64_t i = 0; i < kBlocks; ++i)
    ASSERT_EQ(std::memcmp(dst + i * kBlock, src + order[i] * kBlock, kBlock), 0) << i;
  // The second call reuses the lane (no new stream).
  ASSERT_TRUE(copier.Run(copies, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(api.live_streams(), 1);
  api.Free(src);
  api.Free(dst);
}

TEST_F(GpuCopierTest, StuckStreamTimesOutAndIsRetiredUntilItFinishes) {
  auto* src = static_cast<uint8_t*>(api.Malloc(8192));
  auto* dst = static_cast<uint8_t*>(api.Malloc(8192));
  std::memset(src, 0xAB, 8192);
  GpuCopyLimits limits;
  limits.drain_ms = 200;  // a stalled GPU never drains
  GpuCopier copier(api, 0, limits);
  auto guard = std::make_shared<int>(1);
  std::weak_ptr<int> watch = guard;
  api.Stall(true);
  auto start = std::chrono::steady_clock::now();
  Result r = copier.Run({{dst, src, 8192}}, Deadline::AfterMillis(50), {guard});
  guard.reset();
  EXPECT_EQ(r.code(), llm_datadist::LLM_TIMEOUT) << r.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(copier.stuck_lanes(), 1U);
  EXPECT_FALSE(watch.expired());  // the stuck copy keeps its memory alive
  // Another call meanwhile takes a fresh lane, never the stuck one.
  api.Stall(false);
  ASSERT_TRUE(copier.Run({{dst, src, 100}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(copier.stuck_lanes(), 0U);
  EXPECT_TRUE(watch.expired());
  // When the stalled kernel finally ran, its blocks saw the cancel flag.
  EXPECT_EQ(dst[8191], 0);
  EXPECT_EQ(api.runs_copied.load(), 1U);  // the second call's one run
  api.Free(src);
  api.Free(dst);
}

// A slow GPU (the fake at 256 MiB/s: a 256 KiB piece takes 1 ms) copies
// 32 MiB against a 20 ms deadline: the call stops it, returns LLM_TIMEOUT
// after the piece under way, and no byte changes afterwards.
class GpuCancelTest : public GpuCopierTest {
 protected:
  static constexpr uint64_t kBytes = 32U << 20;
  static constexpr uint64_t kRate = 256U << 20;
  void SetUp() override {
    src = static_cast<uint8_t*>(api.Malloc(kBytes));
    dst = static_cast<uint8_t*>(api.Malloc(kBytes));
    std::memset(src, 0x5A, kBytes);
    api.SetCopyRate(kRate);
  }
  void TearDown() override {
    api.Free(src);
    api.Free(dst);
  }
  // Runs the copy against `ms`; returns the time past the deadline, and
  // checks that nothing lands in `dst` once the call has returned.
  std::chrono::microseconds RunPastDeadline(GpuCopier& copier, int64_t ms) {
    Deadline deadline = Deadline::AfterMillis(ms);
    Result r = copier.Run({{dst, src, kBytes}}, deadline);
    auto overrun = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - deadline.when());
    EXPECT_EQ(r.code(), llm_datadist::LLM_TIMEOUT) << r.message();
    std::vector<uint8_t> at_return(dst, dst + kBytes);
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    EXPECT_EQ(std::memcmp(at_return.data(), dst, kBytes), 0) << "a byte landed after the call returned";
    uint64_t copied = kBytes - static_cast<uint64_t>(std::count(at_return.begin(), at_return.end(), 0));
    EXPECT_GT(copied, 0U);       // it was really running,
    EXPECT_LT(copied, kBytes);   // and really stopped
    EXPECT_EQ(copier.stuck_lanes(), 0U);  // drained: the lane is reused
    std::printf("[ overrun  ] %lld us past a %lld ms deadline, %llu of %llu bytes copied\n",
                static_cast<long long>(overrun.count()), static_cast<long long>(ms),
                static_cast<unsigned long long>(copied), static_cast<unsigned long long>(kBytes));
    return overrun;
  }
  uint8_t* src = nullptr;
  uint8_t* dst = nullptr;
};

TEST_F(GpuCancelTest, AKernelPastItsDeadlineStopsBetweenPieces) {
  GpuCopier copier(api, 0);
  RunPastDeadline(copier, 20);
  EXPECT_GT(api.runs_cancelled.load(), 0U);
  // The lane is whole again: the next call copies everything.
  ASSERT_TRUE(copier.Run({{dst, src, kBytes}}, Deadline::AfterMillis(30000)).ok());
  EXPECT_EQ(dst[kBytes - 1], 0x5A);
  EXPECT_EQ(api.live_streams(), 1);
}

TEST_F(GpuCancelTest, CopyEngineRunsStopAfterTheChunksAlreadyQueued) {
  GpuCopyLimits limits;
  limits.copy_engine_min = 4U << 20;  // the 32 MiB run goes to the copy engines,
  limits.engine_chunk = 1U << 20;     // 1 MiB (4 ms here) at a time,
  limits.engine_window = 2;           // two queued at once
  GpuCopier copier(api, 0, limits);
  int before = api.memcpys.load();
  RunPastDeadline(copier, 20);
  // About 20 ms / 4 ms chunks were queued, never all 32.
  EXPECT_LT(api.memcpys.load() - before, 12);
  EXPECT_EQ(api.launches.load(), 0);
}

TEST_F(GpuCancelTest, AJobDroppedWithoutWaitIsStopped) {
  GpuCopier copier(api, 0);
  std::unique_ptr<GpuCopier::Job> job;
  ASSERT_TRUE(copier.Submit({{dst, src, kBytes}}, {}, &job).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  job.reset();  // a caller's error path
  std::vector<uint8_t> at_return(dst, dst + kBytes);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(std::memcmp(at_return.data(), dst, kBytes), 0);
  EXPECT_GT(api.runs_cancelled.load(), 0U);
}

TEST_F(GpuCopierTest, UnpinnedHostMemoryIsNotHandedToTheKernel) {
  // Guard for the fake itself: a launch with a table in pageable memory fails.
  std::vector<GpuCopyRun> table(1);
  GpuStream s = nullptr;
  ASSERT_TRUE(api.StreamCreate(&s).ok());
  EXPECT_FALSE(api.LaunchCopyRuns(table.data(), 1, nullptr, s).ok());
  api.StreamDestroy(s);
}

}  // namespace
}  // namespace lldd
