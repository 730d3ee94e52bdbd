#include "memory/parallel_copy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "tests/wait_until.h"

namespace lldd {
namespace {

void FillRandom(std::vector<uint8_t>& bytes, std::mt19937_64& rng) {
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(bytes.data() + i, &v, 8);
  }
  for (; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(rng());
}

// A source of random bytes, a destination full of a sentinel, and a list of
// non-overlapping tasks between them (random sizes, random order, random
// places, gaps left untouched); the reference is plain memcpy of each task.
struct Scenario {
  std::vector<uint8_t> src;
  std::vector<uint8_t> dst;
  std::vector<uint8_t> expected;
  std::vector<CopyTask> tasks;

  Scenario(size_t bytes, size_t max_chunk, std::mt19937_64& rng) : src(bytes), dst(bytes, 0xA5) {
    FillRandom(src, rng);
    // Cut [0, bytes) into chunks; some are left out (gaps).
    std::vector<std::pair<size_t, size_t>> chunks;
    for (size_t at = 0; at < bytes;) {
      size_t len = std::min<size_t>(bytes - at, 1 + rng() % max_chunk);
      chunks.emplace_back(at, len);
      at += len;
    }
    // Destinations: the same chunk sizes at a permutation of places. Copying
    // chunk i of src into the place of chunk perm[i] needs equal lengths, so
    // pair each chunk with a destination offset inside dst built by laying
    // the chunks out in shuffled order.
    std::vector<size_t> order(chunks.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<size_t> dst_at(chunks.size());
    size_t at = 0;
    for (size_t i : order) {
      dst_at[i] = at;
      at += chunks[i].second;
    }
    for (size_t i : order) {
      if (rng() % 8 == 0) continue;  // a gap: those destination bytes stay 0xA5
      CopyTask t;
      t.src = src.data() + chunks[i].first;
      t.dst = dst.data() + dst_at[i];
      t.length = rng() % 16 == 0 ? 0 : chunks[i].second;  // a few empty tasks
      tasks.push_back(t);
    }
    expected = dst;
    for (const CopyTask& t : tasks)
      std::memcpy(expected.data() + (static_cast<uint8_t*>(t.dst) - dst.data()), t.src, t.length);
  }
  void ResetDestination() { std::fill(dst.begin(), dst.end(), 0xA5); }
  size_t total() const {
    size_t n = 0;
    for (const auto& t : tasks) n += t.length;
    return n;
  }
  // Index of the first differing byte, or -1.
  long long FirstMismatch() const {
    auto it = std::mismatch(dst.begin(), dst.end(), expected.begin());
    return it.first == dst.end() ? -1 : static_cast<long long>(it.first - dst.begin());
  }
};

TEST(ParallelCopyTest, EmptyListAndEmptyTasks) {
  ParallelCopy({});
  ParallelCopy({}, 4);
  uint8_t a = 1, b = 2;
  ParallelCopy({CopyTask{&a, &b, 0}, CopyTask{nullptr, nullptr, 0}});
  EXPECT_EQ(a, 1);
}

TEST(ParallelCopyTest, SmallCopyOnTheCallersThread) {
  std::mt19937_64 rng(1);
  Scenario s(64 << 10, 3000, rng);
  ASSERT_LT(s.total(), kParallelCopyThreshold);
  ParallelCopy(s.tasks);
  EXPECT_EQ(s.FirstMismatch(), -1);
}

TEST(ParallelCopyTest, LargeRandomTaskListsMatchMemcpy) {
  std::mt19937_64 rng(2);
  // Above the threshold, so that the copy is split over threads; tasks of
  // all sizes so that split points fall inside tasks and between them.
  // Under a sanitizer fewer thread counts (the bytes stay above the
  // threshold, so every one still splits).
  const std::vector<unsigned> thread_counts =
      lldd_test::kSanitized ? std::vector<unsigned>{0u, 3u, 64u} : std::vector<unsigned>{0u, 1u, 2u, 3u, 8u, 64u};
  for (size_t max_chunk : {size_t{1} << 20, size_t{4096}, size_t{33}, size_t{24} << 20}) {
    Scenario s(lldd_test::kSanitized ? 12 << 20 : 24 << 20, max_chunk, rng);
    for (unsigned threads : thread_counts) {
      SCOPED_TRACE(::testing::Message() << "max chunk " << max_chunk << " threads " << threads << " bytes "
                                        << s.total());
      s.ResetDestination();
      ParallelCopy(s.tasks, threads);
      ASSERT_EQ(s.FirstMismatch(), -1);
    }
  }
}

TEST(ParallelCopyTest, OneHugeTaskIsSplitAndCopiedWhole) {
  std::vector<uint8_t> src(40 << 20), dst(40 << 20, 0);
  std::mt19937_64 rng(3);
  FillRandom(src, rng);
  ParallelCopy({CopyTask{dst.data() + 1, src.data() + 3, src.size() - 7}});
  EXPECT_EQ(dst[0], 0);
  EXPECT_TRUE(std::equal(dst.begin() + 1, dst.end() - 6, src.begin() + 3));
  EXPECT_TRUE(std::all_of(dst.end() - 6, dst.end(), [](uint8_t b) { return b == 0; }));
}

TEST(ParallelCopyTest, ConcurrentCallersEachGetTheirBytes) {
  // Several copies at once: one gets the helper threads, the others copy
  // alone; every one must be complete when it returns.
  constexpr int kCallers = 4;
  std::vector<std::unique_ptr<Scenario>> scenarios;
  std::mt19937_64 rng(4);
  for (int i = 0; i < kCallers; ++i) scenarios.push_back(std::make_unique<Scenario>(12 << 20, 1 << 18, rng));
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i)
    threads.emplace_back([&, i] {
      for (int round = 0; round < 3; ++round) ParallelCopy(scenarios[i]->tasks);
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kCallers; ++i) EXPECT_EQ(scenarios[i]->FirstMismatch(), -1) << "caller " << i;
}

TEST(RunOnCopyThreadsTest, EveryJobRunsExactlyOnce) {
  EXPECT_GE(CopyThreadCount(), 1u);
  std::vector<std::function<void()>> none;
  RunOnCopyThreads(none);
  for (size_t n : {1, 2, 3, 8, 17, 100}) {
    std::vector<std::atomic<int>> runs(n);
    std::vector<std::function<void()>> jobs;
    for (size_t i = 0; i < n; ++i) jobs.push_back([&runs, i] { ++runs[i]; });
    RunOnCopyThreads(jobs);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(runs[i].load(), 1) << "job " << i << " of " << n;
  }
}

TEST(RunOnCopyThreadsTest, ConcurrentCallersRunAllTheirJobsBeforeReturning) {
  constexpr int kCallers = 6;
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int c = 0; c < kCallers; ++c)
    threads.emplace_back([&] {
      for (int round = 0; round < 200; ++round) {
        std::vector<std::atomic<int>> runs(5);
        std::vector<std::function<void()>> jobs;
        for (size_t i = 0; i < runs.size(); ++i) jobs.push_back([&runs, i] { ++runs[i]; });
        RunOnCopyThreads(jobs);
        for (auto& r : runs) bad += r.load() != 1;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace lldd
