// Issue 9 regressions, across processes over TCP: the accepting side of a
// link (whose data connections are reverse-dialed by its peer) keeps moving
// multi-stripe transfers after bursts of timed-out requests, and every Pull
// or Push returns within its wait time plus a margin, also while bytes flow.
//
// Each test runs twice: with this process as the connecting side (it links
// to a forked peer) and as the accepting side (it listens and the forked
// peer links to it). Only this process transfers; the peer fills and checks.
#include <gtest/gtest.h>

#include <algorithm>

#include <atomic>
#include <chrono>
#include <numeric>
#include <thread>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"
#include "tests/wait_until.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;
using lldd_test::Pattern;

namespace {

constexpr uint64_t kPeerId = 1;
constexpr uint64_t kSelfId = 2;
// Generous for sanitizer builds on a loaded machine: the contract is the
// wait time; this is what a return may be late by.
constexpr int64_t kMarginMs = 1000;

using Clock = std::chrono::steady_clock;
int64_t MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

std::string Hex(Status st) {
  char text[32];
  std::snprintf(text, sizeof(text), "0x%X", static_cast<unsigned>(st));
  return text;
}

// A cache of ours in user memory (RegisterKvCache): int32 [rows, cols] per
// tensor.
struct LocalCache {
  std::vector<std::vector<int32_t>> tensors;
  std::vector<uintptr_t> addrs;
  Cache cache;
  uint64_t rows, cols;
  LocalCache(LlmDataDist& dd, uint32_t n, uint64_t r, uint64_t c) : rows(r), cols(c) {
    tensors.assign(n, std::vector<int32_t>(r * c, 0));
    std::vector<uint64_t> a;
    for (auto& t : tensors) {
      a.push_back(reinterpret_cast<uint64_t>(t.data()));
      addrs.push_back(reinterpret_cast<uintptr_t>(t.data()));
    }
    int64_t id = -1;
    EXPECT_EQ(dd.RegisterKvCache(Int32Desc(n, r, c), a, RegisterCfg{}, id), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    cache.cache_id = id;
  }
  void Fill(int64_t seed) { lldd_test::FillPattern(addrs, rows, cols, seed); }
  void Zero() {
    for (auto& t : tensors) lldd_test::StoreInts(t.data(), t.size(), 0);
  }
  // "" when every element holds Pattern(seed), else where it first differs.
  std::string Check(int64_t seed) const {
    for (uint32_t t = 0; t < tensors.size(); ++t)
      for (uint64_t r = 0; r < rows; ++r)
        for (uint64_t c = 0; c < cols; ++c)
          if (lldd_test::LoadInt(&tensors[t][r * cols + c]) != Pattern(seed, t, r, c))
            return "tensor " + std::to_string(t) + " row " + std::to_string(r) + " col " + std::to_string(c);
    return "";
  }
  bool AnyNonZero() const {
    for (const auto& t : tensors)
      for (size_t i = 0; i < t.size(); i += 1024)
        if (lldd_test::LoadInt(&t[i]) != 0) return true;
    return false;
  }
};

std::vector<uint64_t> AllBlocks(uint64_t rows) {
  std::vector<uint64_t> b(rows);
  std::iota(b.begin(), b.end(), 0);
  return b;
}

enum class Side { kConnecting, kAccepting };

class TransferDeadlineTest : public ::testing::TestWithParam<Side> {
 protected:
  // Both ends force TCP, 4 connections per link; `wait_ms` is our
  // llm.SyncKvCacheWaitTime.
  void Start(int64_t wait_ms) {
    wait_ms_ = wait_ms;
    const std::map<std::string, std::string> peer_options{{OPTION_TRANSFER_BACKEND, "tcp"},
                                                          {"llm.TcpConnectionsPerLink", "4"},
                                                          {OPTION_SYNC_CACHE_WAIT_TIME, "10000"}};
    peer_ = std::make_unique<ForkedServer>(kPeerId, peer_options);
    std::map<std::string, std::string> mine{{OPTION_TRANSFER_BACKEND, "tcp"},
                                            {"llm.TcpConnectionsPerLink", "4"},
                                            {OPTION_SYNC_CACHE_WAIT_TIME, std::to_string(wait_ms)}};
    if (GetParam() == Side::kAccepting) {
      mine[OPTION_LISTEN_IP_INFO] = "127.0.0.1:0";
      self_ = std::make_unique<LlmDataDist>(kSelfId, LlmRole::kPrompt);
      ASSERT_EQ(self_->Initialize(ClientOptions(mine)), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
      const uint32_t port = self_->GetListenPort();
      ASSERT_GT(port, 0u);
      ASSERT_EQ(peer_->Command("link " + std::to_string(kSelfId) + " 127.0.0.1 " + std::to_string(port)), "0x0");
    } else {
      self_ = std::make_unique<LlmDataDist>(kSelfId, LlmRole::kDecoder);
      ASSERT_EQ(self_->Initialize(ClientOptions(mine)), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
      std::vector<Status> rets;
      ASSERT_EQ(self_->LinkLlmClusters({ClusterAt(kPeerId, peer_->port())}, rets, 5000), LLM_SUCCESS)
          << LlmDataDist::GetLastErrorMessage();
    }
    ASSERT_STREQ(self_->GetLinkTransport(kPeerId), "tcp");
  }
  void TearDown() override {
    if (peer_) peer_->Kill();  // it may be frozen
    if (self_) self_->Finalize();
    self_.reset();
    peer_.reset();
  }

  // One whole-cache pull (even i) or push (odd i) between `mine` and the
  // peer's cache `remote`, byte-checked on the receiving side. "" when it
  // worked, else what went wrong.
  std::string VerifiedTransfer(LocalCache& mine, int64_t remote, int i) {
    const int64_t seed = 100 + i;
    const auto blocks = AllBlocks(mine.rows);
    const auto start = Clock::now();
    if (i % 2 == 0) {
      if (peer_->Command("fill " + std::to_string(remote) + " " + std::to_string(seed)) != "ok") return "peer fill failed";
      mine.Zero();
      Status st = self_->PullKvBlocks(CacheIndex{kPeerId, remote}, mine.cache, blocks, blocks);
      if (st != LLM_SUCCESS)
        return "pull " + Hex(st) + " after " + std::to_string(MillisSince(start)) + " ms: " +
               LlmDataDist::GetLastErrorMessage();
      std::string where = mine.Check(seed);
      return where.empty() ? "" : "pulled bytes differ at " + where;
    }
    mine.Fill(seed);
    Status st = self_->PushKvBlocks(mine.cache, CacheIndex{kPeerId, remote}, blocks, blocks);
    if (st != LLM_SUCCESS)
      return "push " + Hex(st) + " after " + std::to_string(MillisSince(start)) + " ms: " +
             LlmDataDist::GetLastErrorMessage();
    std::string check = peer_->Command("check " + std::to_string(remote) + " " + std::to_string(seed));
    return check == "ok" ? "" : "pushed bytes differ: " + check;
  }

  // `threads` threads, each pulling the peer's cache `remote` (of `rows`
  // blocks) into a cache of its own; returns how many failed, and checks
  // that each returned within the wait time plus the margin.
  int PullBurst(int threads, int64_t remote, uint32_t n, uint64_t rows, uint64_t cols) {
    std::vector<std::unique_ptr<LocalCache>> dsts;
    for (int t = 0; t < threads; ++t) dsts.push_back(std::make_unique<LocalCache>(*self_, n, rows, cols));
    std::atomic<int> failed{0};
    std::atomic<int64_t> slowest{0};
    std::vector<std::thread> pool;
    const auto blocks = AllBlocks(rows);
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const auto start = Clock::now();
        Status st = self_->PullKvBlocks(CacheIndex{kPeerId, remote}, dsts[t]->cache, blocks, blocks);
        const int64_t ms = MillisSince(start);
        int64_t prev = slowest.load();
        while (ms > prev && !slowest.compare_exchange_weak(prev, ms)) {
        }
        if (st != LLM_SUCCESS) ++failed;
      });
    for (auto& th : pool) th.join();
    EXPECT_LT(slowest.load(), wait_ms_ + kMarginMs) << "a pull of the burst returned late";
    for (auto& d : dsts) EXPECT_EQ(self_->UnregisterKvCache(d->cache.cache_id), LLM_SUCCESS);
    return failed.load();
  }

  void StillFlowingAtItsDeadline(bool pull);

  int64_t wait_ms_ = 0;
  std::unique_ptr<ForkedServer> peer_;
  std::unique_ptr<LlmDataDist> self_;
};

// Issue 9's reproducer. 8 MiB transfers take several stripes (4 x 1 MiB+);
// bursts of 64 small pulls overlap reverse dials, and a burst against a
// frozen peer makes every one of them time out and discard its connection.
// Afterwards every multi-stripe transfer must work (it used to fail 36 of
// 36 times on the accepting side: "no data connection became free in time").
TEST_P(TransferDeadlineTest, MultiStripeTransfersWorkAfterTimedOutBursts) {
  ASSERT_NO_FATAL_FAILURE(Start(1000));
  constexpr uint32_t kTensors = 4;
  constexpr uint64_t kRows = 32, kCols = 16384;  // 4 x 32 x 64 KiB = 8 MiB
  const int64_t big = peer_->RegisterInt32(kTensors, kRows, kCols, 1);
  const int64_t small = peer_->RegisterInt32(1, 8, kCols, 2);  // 512 KiB
  ASSERT_GT(big, 0);
  ASSERT_GT(small, 0);
  LocalCache mine(*self_, kTensors, kRows, kCols);

  for (int i = 0; i < 4; ++i) ASSERT_EQ(VerifiedTransfer(mine, big, i), "") << "before any burst, transfer " << i;

  // Overlapping reverse dials: 64 small pulls at once (some may time out).
  const int failed_live = PullBurst(64, small, 1, 8, kCols);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(VerifiedTransfer(mine, big, i), "") << "after a live burst, transfer " << i;

  // Every one times out: the peer is frozen while they run; each discards
  // its connection, so the transfers that follow dial anew (each reverse
  // dial is a chance for the accounting race). Several rounds: a leaked
  // promise never comes back, so leaks add up.
  for (int round = 0; round < 5; ++round) {
    peer_->Freeze();
    const int failed_frozen = PullBurst(round == 0 ? 64 : 16, small, 1, 8, kCols);
    peer_->Thaw();
    EXPECT_EQ(failed_frozen, round == 0 ? 64 : 16);
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(VerifiedTransfer(mine, big, i), "") << "after frozen burst " << round << ", transfer " << i;
  }

  int failures = 0;
  for (int i = 0; i < 36; ++i) {
    std::string why = VerifiedTransfer(mine, big, i);
    if (!why.empty()) {
      ++failures;
      ADD_FAILURE() << "after the bursts, transfer " << i << ": " << why;
    }
  }
  EXPECT_EQ(failures, 0) << failures << " of 36 multi-stripe transfers failed (" << failed_live
                         << " of 64 pulls of the live burst had failed)";
}

// A peer frozen while bytes flow: the transfer stops at its deadline.
TEST_P(TransferDeadlineTest, PeerFrozenMidPullTimesOutInTime) {
  ASSERT_NO_FATAL_FAILURE(Start(1000));
  constexpr uint64_t kRows = 64, kCols = 262144;  // 64 x 1 MiB = 64 MiB
  const int64_t remote = peer_->RegisterInt32(1, kRows, kCols, 3);
  ASSERT_GT(remote, 0);
  LocalCache mine(*self_, 1, kRows, kCols);
  // A first small pull, so that the cache's description and connections exist.
  ASSERT_EQ(self_->PullKvBlocks(CacheIndex{kPeerId, remote}, mine.cache, {1}, {1}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  mine.Zero();

  std::atomic<bool> done{false};
  Status st = LLM_SUCCESS;
  int64_t ms = -1;
  const auto blocks = AllBlocks(kRows);
  std::thread puller([&] {
    const auto start = Clock::now();
    st = self_->PullKvBlocks(CacheIndex{kPeerId, remote}, mine.cache, blocks, blocks);
    ms = MillisSince(start);
    done = true;
  });
  // Freeze the peer once the first bytes have landed.
  const auto watch = Clock::now();
  while (!done && !mine.AnyNonZero() && MillisSince(watch) < 10000) {
  }
  const bool flowing = !done;
  peer_->Freeze();
  puller.join();
  if (!flowing) GTEST_SKIP() << "the 64 MiB pull finished before the peer could be frozen";
  EXPECT_EQ(st, LLM_TIMEOUT) << Hex(st) << " " << LlmDataDist::GetLastErrorMessage();
  EXPECT_LT(ms, wait_ms_ + kMarginMs) << "returned " << ms << " ms after it started; wait time " << wait_ms_;
}

TEST_P(TransferDeadlineTest, PeerFrozenMidPushTimesOutInTime) {
  ASSERT_NO_FATAL_FAILURE(Start(1000));
  constexpr uint64_t kRows = 128, kCols = 262144;  // 128 MiB
  const int64_t remote = peer_->RegisterInt32(1, kRows, kCols, 4);
  ASSERT_GT(remote, 0);
  LocalCache mine(*self_, 1, kRows, kCols);
  mine.Fill(5);
  ASSERT_EQ(self_->PushKvBlocks(mine.cache, CacheIndex{kPeerId, remote}, {1}, {1}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  std::atomic<bool> done{false};
  Status st = LLM_SUCCESS;
  int64_t ms = -1;
  const auto blocks = AllBlocks(kRows);
  std::thread pusher([&] {
    const auto start = Clock::now();
    st = self_->PushKvBlocks(mine.cache, CacheIndex{kPeerId, remote}, blocks, blocks);
    ms = MillisSince(start);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const bool flowing = !done;
  peer_->Freeze();
  pusher.join();
  if (!flowing) GTEST_SKIP() << "the 128 MiB push finished before the peer could be frozen";
  if (st == LLM_SUCCESS) GTEST_SKIP() << "the push completed before the freeze took hold (" << ms << " ms)";
  EXPECT_EQ(st, LLM_TIMEOUT) << Hex(st) << " " << LlmDataDist::GetLastErrorMessage();
  EXPECT_LT(ms, wait_ms_ + kMarginMs) << "returned " << ms << " ms after it started; wait time " << wait_ms_;
}

// A transfer far larger than its wait time allows, with the peer awake:
// bytes keep flowing when the deadline passes, and the transfer must stop
// then (issue 9 saw 755 ms against a 300 ms wait time).
void TransferDeadlineTest::StillFlowingAtItsDeadline(bool pull) {
  constexpr int64_t kWaitMs = 100;
  ASSERT_NO_FATAL_FAILURE(Start(kWaitMs));
  // 256 MiB; 64 MiB under ASan, where each block is then named several
  // times (below). ThreadSanitizer pulled 64 MiB in 80-100 ms here, too
  // close to the wait time, and reports blocks named twice: 256 MiB there.
  const uint64_t kRows = (lldd_test::kSanitized && !lldd_test::kThreadSanitized) ? 64 : 256, kCols = 262144;
  const int64_t remote = peer_->RegisterInt32(1, kRows, kCols, 6);
  ASSERT_GT(remote, 0);
  LocalCache mine(*self_, 1, kRows, kCols);
  mine.Fill(7);
  // Warm up: the description and the connections (retried: 100 ms is short
  // on a loaded machine). A timed-out transfer closes the connections it
  // used, so this runs again before each timed call, which then spends its
  // 100 ms moving bytes rather than dialling.
  auto warm_up = [&] {
    for (int i = 0; i < 50; ++i) {
      std::vector<uint64_t> some{0, 1, 2, 3};
      if (self_->PullKvBlocks(CacheIndex{kPeerId, remote}, mine.cache, some, some) == LLM_SUCCESS) return true;
    }
    return false;
  };
  ASSERT_TRUE(warm_up()) << LlmDataDist::GetLastErrorMessage();
  // Each call names every block `repeat` times, so that it moves about ten
  // times what this machine moves within the wait time (an ASan build on a
  // quick machine pulled the whole 64 MiB in 20 ms, and no call was still
  // flowing at its deadline). Not under ThreadSanitizer: it is slow enough
  // with each block once, and a block named twice is written by two stripes
  // at once (the same bytes), which it rightly reports.
  const std::vector<uint64_t> once = AllBlocks(kRows);
  std::vector<uint64_t> blocks = once;
  int repeat = 1;
  // After a call that finished within the wait time, in `ms`.
  auto name_each_block_more_often = [&](int64_t ms) {
    if (lldd_test::kThreadSanitized || repeat >= 64) return;
    repeat = static_cast<int>(std::min<int64_t>(int64_t{repeat} * (10 * kWaitMs / std::max<int64_t>(ms, 1) + 1), 64));
    blocks.clear();
    for (int r = 0; r < repeat; ++r) blocks.insert(blocks.end(), once.begin(), once.end());
  };
  if (!lldd_test::kThreadSanitized) {
    const auto start = Clock::now();
    Status st = pull ? self_->PullKvBlocks(CacheIndex{kPeerId, remote}, mine.cache, blocks, blocks)
                     : self_->PushKvBlocks(mine.cache, CacheIndex{kPeerId, remote}, blocks, blocks);
    if (st == LLM_SUCCESS) name_each_block_more_often(MillisSince(start));
  }
  // Three timed calls; pulls go on (up to ten) until one had bytes flowing
  // at its deadline.
  int landed = 0, calls = 0;
  for (; calls < 3 || (pull && landed == 0 && calls < 10); ++calls) {
    ASSERT_TRUE(warm_up()) << LlmDataDist::GetLastErrorMessage();
    if (pull) mine.Zero();
    const auto start = Clock::now();
    Status st = pull ? self_->PullKvBlocks(CacheIndex{kPeerId, remote}, mine.cache, blocks, blocks)
                     : self_->PushKvBlocks(mine.cache, CacheIndex{kPeerId, remote}, blocks, blocks);
    const int64_t ms = MillisSince(start);
    if (st == LLM_SUCCESS) {
      // It finished within the wait time (the calibration above may have
      // timed out on a cold start, leaving each block named once): the bound
      // still holds, and the next call names each block more often.
      EXPECT_LT(ms, kWaitMs + kMarginMs);
      name_each_block_more_often(ms);
      continue;
    }
    EXPECT_EQ(st, LLM_TIMEOUT) << Hex(st) << " " << LlmDataDist::GetLastErrorMessage();
    EXPECT_LT(ms, kWaitMs + kMarginMs) << "returned " << ms << " ms after it started; wait time " << kWaitMs
                                       << "; each block named " << repeat << " times";
    if (pull) landed += mine.AnyNonZero();
  }
  // At least one pull had bytes flowing when its deadline passed (else the
  // test did not test what it says).
  if (pull) {
    EXPECT_GT(landed, 0) << "no pull was still flowing at its deadline in " << calls << " calls; each block named "
                         << repeat << " times";
  }
  // The link still works afterwards.
  for (int i = 0; i < 50; ++i) {
    std::vector<uint64_t> some{9};
    if (self_->PullKvBlocks(CacheIndex{kPeerId, remote}, mine.cache, some, some) == LLM_SUCCESS) return;
  }
  ADD_FAILURE() << "no small pull worked after the timed-out ones: " << LlmDataDist::GetLastErrorMessage();
}

TEST_P(TransferDeadlineTest, PullStillFlowingAtItsDeadlineStops) { StillFlowingAtItsDeadline(true); }

// Disabled: fails intermittently (e.g. 1719 ms against 100 ms), see the
// report with issue 9's tests: TcpEndpoint's Pump() keeps sending while
// sendmsg() makes progress and returns to the deadline check only at EAGAIN,
// which a fast reader on loopback may never cause.
TEST_P(TransferDeadlineTest, PushStillFlowingAtItsDeadlineStops) { StillFlowingAtItsDeadline(false); }

INSTANTIATE_TEST_SUITE_P(Sides, TransferDeadlineTest, ::testing::Values(Side::kConnecting, Side::kAccepting),
                         [](const ::testing::TestParamInfo<Side>& info) {
                           return info.param == Side::kConnecting ? std::string("connecting")
                                                                  : std::string("accepting");
                         });

}  // namespace
