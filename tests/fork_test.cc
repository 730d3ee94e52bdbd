// A process that used the library forks: the child gets a clear error from
// the parent's instances, can drop them without hanging, and runs instances
// of its own; the parent's instances go on working.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"
#include "tests/wait_until.h"

namespace {

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::FillPattern;
using lldd_test::Int32Desc;
using lldd_test::RowHolds;

constexpr uint64_t kServerId = 71, kClientId = 72;
// 2 x 64 x 16384 int32 = 8 MiB: several TCP stripes, so the blocking-job
// pool runs the transfer.
constexpr uint32_t kTensors = 2;
constexpr uint64_t kRows = 64, kCols = 16384;

struct Pair {
  std::unique_ptr<LlmDataDist> server, client;
  Cache remote, local;
};

// A tcp server and client in this process, linked, the server's cache
// filled with Pattern(seed). Empty on failure (the reason in `why`).
Pair MakePair(int64_t seed, std::string* why) {
  Pair p;
  const auto opts = [](std::map<std::string, std::string> extra) {
    // Constructed in place (no caller sets these keys), not assigned: GCC 12
    // at -O3 reports a false -Wrestrict for assigning "4" to a string.
    extra.emplace(OPTION_TRANSFER_BACKEND, "tcp");
    extra.emplace(LlmDataDist::OPTION_TCP_CONNECTIONS_PER_LINK, "4");
    return ClientOptions(extra);
  };
  p.server = std::make_unique<LlmDataDist>(kServerId, LlmRole::kPrompt);
  p.client = std::make_unique<LlmDataDist>(kClientId, LlmRole::kDecoder);
  std::vector<Status> rets;
  if (p.server->Initialize(opts({{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}})) != LLM_SUCCESS ||
      p.client->Initialize(opts({})) != LLM_SUCCESS ||
      p.server->AllocateCache(Int32Desc(kTensors, kRows, kCols), p.remote) != LLM_SUCCESS ||
      p.client->AllocateCache(Int32Desc(kTensors, kRows, kCols), p.local) != LLM_SUCCESS ||
      p.client->LinkLlmClusters({ClusterAt(kServerId, p.server->GetListenPort())}, rets, 5000) != LLM_SUCCESS) {
    *why = LlmDataDist::GetLastErrorMessage();
    return {};
  }
  FillPattern(p.remote.tensor_addrs, kRows, kCols, seed);
  return p;
}

// Pulls every row (as blocks) and checks it; "" or what went wrong.
std::string PullAndCheck(Pair& p, int64_t seed) {
  for (uint32_t t = 0; t < kTensors; ++t)
    std::memset(reinterpret_cast<void*>(p.local.tensor_addrs[t]), 0, kRows * kCols * 4);
  std::vector<uint64_t> rows(kRows);
  for (uint64_t r = 0; r < kRows; ++r) rows[r] = r;
  if (p.client->PullKvBlocks(CacheIndex{kServerId, p.remote.cache_id}, p.local, rows, rows) != LLM_SUCCESS)
    return std::string("pull failed: ") + LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < kTensors; ++t)
    for (uint64_t r = 0; r < kRows; ++r)
      if (!RowHolds(p.local, t, r, kCols, seed, t, r))
        return "tensor " + std::to_string(t) + " row " + std::to_string(r);
  return "";
}

// Exit codes of the child, one per claim.
enum ChildResult { kOk = 0, kOldInstanceAnswered = 10, kNoForkReason, kOldPortShown, kOwnPairFailed };

ChildResult Child(Pair& inherited) {
  if (inherited.client->PullKvCache(CacheIndex{kServerId, inherited.remote.cache_id, 0}, inherited.local, 0) !=
      LLM_FAILED)
    return kOldInstanceAnswered;
  if (std::string(LlmDataDist::GetLastErrorMessage()).find("before a fork") == std::string::npos) return kNoForkReason;
  if (inherited.server->GetListenPort() != 0) return kOldPortShown;
  inherited.client->Finalize();  // a no-op here, and no hang
  std::string why;
  Pair own = MakePair(5, &why);
  if (!own.client || !PullAndCheck(own, 5).empty()) return kOwnPairFailed;
  own.client->Finalize();
  own.server->Finalize();
  // Dropping the parent's instances must return (they are left alone).
  inherited.client.reset();
  inherited.server.reset();
  return kOk;
}

TEST(Fork, AChildRefusesTheParentsInstancesAndRunsItsOwn) {
  if (lldd_test::kThreadSanitized) GTEST_SKIP() << "ThreadSanitizer cannot follow a forked child's new threads";
  std::string why;
  Pair parent = MakePair(3, &why);
  ASSERT_TRUE(parent.client) << why;
  ASSERT_EQ(PullAndCheck(parent, 3), "");
  // Let the parent's threads go idle first: a fork while one of them is
  // inside a sanitizer's allocator would hang the child for reasons that
  // have nothing to do with the library.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(60);  // a hang fails the test instead of stalling it
    _exit(Child(parent));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child hung or crashed (signal " << WTERMSIG(status) << ")";
  EXPECT_EQ(WEXITSTATUS(status), kOk) << "10: the parent's instance answered; 11: no reason naming the fork; "
                                         "12: the parent's port shown; 13: the child's own pair failed";
  EXPECT_EQ(PullAndCheck(parent, 3), "") << "the parent's instances after the fork";
}

}  // namespace
