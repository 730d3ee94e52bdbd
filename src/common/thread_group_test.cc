#include "common/thread_group.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>

#include "tests/wait_until.h"

namespace lldd {
namespace {

using lldd_test::WaitUntil;

TEST(ThreadGroupTest, EverySpawnedFunctionRuns) {
  std::atomic<int> ran{0};
  {
    ThreadGroup group;
    for (int i = 0; i < 50; ++i) group.Spawn([&ran] { ++ran; });
  }  // the destructor joins them
  EXPECT_EQ(ran.load(), 50);
}

TEST(ThreadGroupTest, FinishedThreadsAreJoinedAndLiveOnesKept) {
  ThreadGroup group;
  std::atomic<bool> release{false};
  std::atomic<int> finished{0};
  for (int i = 0; i < 3; ++i)
    group.Spawn([&] {
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  for (int i = 0; i < 20; ++i) group.Spawn([&finished] { ++finished; });
  ASSERT_TRUE(WaitUntil([&] { return finished.load() == 20; }));
  // A short thread leaves the list only once it has named itself.
  EXPECT_TRUE(WaitUntil([&] { return group.size() == 3; })) << group.size() << " threads left";
  release = true;
  EXPECT_TRUE(WaitUntil([&] { return group.size() == 0; })) << group.size() << " threads left";
}

TEST(ThreadGroupTest, ThousandsOfShortThreadsLeaveNoneBehind) {
  ThreadGroup group;
  std::atomic<int> ran{0};
  for (int i = 0; i < 2000; ++i) group.Spawn([&ran] { ++ran; });
  ASSERT_TRUE(WaitUntil([&] { return ran.load() == 2000; }));
  EXPECT_TRUE(WaitUntil([&] { return group.size() == 0; })) << group.size() << " threads left";
}

// The acceptor's thread spawns a thread per connection: a group's thread
// may spawn into its own group, also while JoinAll runs.
TEST(ThreadGroupTest, AGroupThreadMaySpawnIntoItsGroupWhileItIsJoined) {
  std::atomic<int> ran{0};
  auto group = std::make_unique<ThreadGroup>();
  ThreadGroup* g = group.get();
  group->Spawn([g, &ran] {
    for (int i = 0; i < 100; ++i) {
      g->Spawn([&ran] { ++ran; });
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    ++ran;
  });
  group->JoinAll();
  EXPECT_EQ(ran.load(), 101) << "JoinAll returned before every spawned thread ended";
  EXPECT_EQ(group->size(), 0U);
  group.reset();
}

TEST(ThreadGroupTest, SpawnAfterJoinAllStillWorks) {
  ThreadGroup group;
  std::atomic<int> ran{0};
  group.Spawn([&ran] { ++ran; });
  group.JoinAll();
  EXPECT_EQ(ran.load(), 1);
  group.Spawn([&ran] { ++ran; });
  group.JoinAll();
  EXPECT_EQ(ran.load(), 2);
  EXPECT_EQ(group.size(), 0U);
}

}  // namespace
}  // namespace lldd
