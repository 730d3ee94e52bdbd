#include "common/per_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "common/worker_pool.h"
#include "memory/parallel_copy.h"
#include "tests/wait_until.h"

namespace lldd {
namespace {

struct Counted {
  static inline std::atomic<int> made{0};
  Counted() { ++made; }
};

// Runs `body` in a forked child that is killed if it takes over 20 s (a
// pool whose workers stayed behind in the parent would hang it); returns
// the child's exit code, or -1 when it was killed.
int InForkedChild(const std::function<bool()>& body) {
  // The parent's pool threads finish their last job's bookkeeping before
  // going idle; a fork in that moment could copy a lock they hold inside
  // the allocator, which is the harness's problem, not the one tested here.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(20);
    _exit(body() ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool RunsEveryJob(size_t n) {
  std::vector<std::atomic<int>> ran(n);
  std::vector<std::function<void()>> jobs;
  for (size_t i = 0; i < n; ++i) jobs.push_back([&ran, i] { ran[i] = 1; });
  RunAll(jobs);
  for (auto& r : ran)
    if (r != 1) return false;
  return true;
}

bool CopiesInParallel() {
  std::vector<uint8_t> src(4 * kParallelCopyThreshold), dst(src.size());
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + 3);
  ParallelCopy({{dst.data(), src.data(), src.size()}}, 4);
  return std::memcmp(dst.data(), src.data(), src.size()) == 0;
}

TEST(PerProcess, OneObjectPerProcessAndAFreshOneInAForkedChild) {
  Counted* parent = &PerProcess<Counted>::Get();
  EXPECT_EQ(&PerProcess<Counted>::Get(), parent);
  EXPECT_EQ(Counted::made, 1);
  EXPECT_EQ(InForkedChild([parent] {
              Counted* mine = &PerProcess<Counted>::Get();
              return mine != parent && &PerProcess<Counted>::Get() == mine && Counted::made == 2;
            }),
            0)
      << "the child did not build its own object";
  EXPECT_EQ(&PerProcess<Counted>::Get(), parent) << "the parent's object changed";
  EXPECT_EQ(Counted::made, 1);
}

TEST(PerProcess, PoolsWorkInAChildForkedAfterTheParentUsedThem) {
  if (lldd_test::kThreadSanitized) GTEST_SKIP() << "ThreadSanitizer cannot follow a forked child's new threads";
  ASSERT_TRUE(RunsEveryJob(6));
  ASSERT_TRUE(CopiesInParallel());
  ASSERT_GT(WorkerCount(), 0U);
  EXPECT_EQ(InForkedChild([] { return RunsEveryJob(6) && CopiesInParallel(); }), 0)
      << "a forked child's blocking-job or copy pool lost its work (or hung) on workers left in the parent";
  // And the parent's pools still work.
  EXPECT_TRUE(RunsEveryJob(6));
  EXPECT_TRUE(CopiesInParallel());
}

}  // namespace
}  // namespace lldd
