// Faults, repetition, concurrency and scale: dead or cut-off peers, link
// tokens, thousands of cycles that must leak nothing, many threads on one
// instance, Finalize under load, and 512 clients on one server.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "llm_datadist/llm_datadist.h"
#include "netns.h"
#include "test_peer.h"
#include "tests/wait_until.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;
using lldd_test::Pattern;
using lldd_test::ResourceCounts;

namespace {

constexpr uint64_t kServerId = 71;

int64_t ElapsedMs(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

Status LinkTo(LlmDataDist& dd, uint64_t cluster, uint16_t port, const char* ip = "127.0.0.1", int timeout = 3000) {
  std::vector<Status> rets;
  return dd.LinkLlmClusters({ClusterAt(cluster, port, ip)}, rets, timeout);
}

Status Unlink(LlmDataDist& dd, uint64_t cluster, bool force = false) {
  std::vector<Status> rets;
  return dd.UnlinkLlmClusters({ClusterAt(cluster, 1)}, rets, 1000, force);
}

// --- Link tokens ---

TEST(LinkToken, OnlyPeersSharingTheTokenLink) {
  ForkedServer server(kServerId, {{"llm.LinkToken", "correct horse"}});
  const int64_t remote = server.RegisterInt32(2, 4, 16, 3);
  struct Case {
    const char* token;
    Status want;
    const char* needle;
  };
  const Case cases[] = {
      {nullptr, LLM_LINK_FAILED, "requires a link token"},
      {"battery staple", LLM_LINK_FAILED, "tokens differ"},
      {"correct horse", LLM_SUCCESS, ""},
  };
  for (const Case& c : cases) {
    LlmDataDist client(72, LlmRole::kDecoder);
    std::map<std::string, std::string> extra;
    if (c.token != nullptr) extra["llm.LinkToken"] = c.token;
    ASSERT_EQ(client.Initialize(ClientOptions(extra)), LLM_SUCCESS);
    EXPECT_EQ(LinkTo(client, kServerId, server.port()), c.want) << (c.token ? c.token : "(none)");
    EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find(c.needle), std::string::npos)
        << LlmDataDist::GetLastErrorMessage();
    if (c.want == LLM_SUCCESS) {
      Cache local;
      ASSERT_EQ(client.AllocateCache(Int32Desc(2, 4, 16), local), LLM_SUCCESS);
      ASSERT_EQ(client.PullKvCache(CacheIndex{kServerId, remote, 1}, local, 2), LLM_SUCCESS);
      EXPECT_TRUE(lldd_test::RowHolds(local, 1, 2, 16, 3, 1, 1));
    }
  }
}

TEST(LinkToken, ClientWithTokenRefusesServerWithout) {
  ForkedServer server(kServerId);
  LlmDataDist client(72, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions({{"llm.LinkToken", "t"}})), LLM_SUCCESS);
  EXPECT_EQ(LinkTo(client, kServerId, server.port()), LLM_LINK_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("token"), std::string::npos);
}

// --- Repetition leaks nothing ---

// A thousand cycles (250 under a sanitizer: a leak per cycle still shows).
constexpr int kCycles = lldd_test::kSanitized ? 250 : 1000;

TEST(Cycles, ThousandLinkUnlinkCyclesLeakNothingOnEitherSide) {
  for (const char* backend : {"tcp", "shm"}) {
    SCOPED_TRACE(backend);
    ForkedServer server(kServerId, {{OPTION_TRANSFER_BACKEND, backend}});
    const int64_t remote = server.AllocateInt32(2, 4, 16, 4);
    LlmDataDist client(73, LlmRole::kDecoder);
    ASSERT_EQ(client.Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, backend}})), LLM_SUCCESS);
    Cache local;
    ASSERT_EQ(client.AllocateCache(Int32Desc(2, 4, 16), local), LLM_SUCCESS);
    auto cycle = [&] {
      ASSERT_EQ(LinkTo(client, kServerId, server.port()), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
      ASSERT_EQ(client.PullKvBlocks(CacheIndex{kServerId, remote}, local, {3}, {0}), LLM_SUCCESS);
      ASSERT_EQ(Unlink(client, kServerId), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
    };
    // Threads serving an unlinked link end asynchronously, on both sides:
    // counts are read once they have settled.
    auto settled = [&](ResourceCounts* mine, ResourceCounts* theirs) {
      ResourceCounts m0, t0;
      for (int i = 0; i < 300; ++i) {
        *mine = ResourceCounts::Now();
        *theirs = server.Stats();
        if (i > 0 && mine->fds == m0.fds && mine->threads == m0.threads && theirs->fds == t0.fds &&
            theirs->threads == t0.threads)
          return;
        m0 = *mine;
        t0 = *theirs;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    };
    cycle();
    ResourceCounts mine, theirs, mine_after, theirs_after;
    settled(&mine, &theirs);
    for (int i = 0; i < kCycles && !HasFatalFailure(); ++i) cycle();
    settled(&mine_after, &theirs_after);
    EXPECT_EQ(mine_after.fds, mine.fds);
    EXPECT_LE(mine_after.threads, mine.threads);
    EXPECT_EQ(mine_after.mappings, mine.mappings);
    EXPECT_LT(mine_after.heap_bytes, mine.heap_bytes + (256 << 10)) << "heap grew";
    EXPECT_EQ(theirs_after.fds, theirs.fds) << "server: " << theirs_after.ToString() << " was " << theirs.ToString();
    EXPECT_LE(theirs_after.threads, theirs.threads);
    EXPECT_EQ(theirs_after.mappings, theirs.mappings);
    EXPECT_LT(theirs_after.heap_bytes, theirs.heap_bytes + (256 << 10)) << "server heap grew";
    EXPECT_TRUE(lldd_test::RowHolds(local, 1, 0, 16, 4, 1, 3));
  }
}

TEST(Cycles, ThousandRegisterCyclesLeakNothing) {
  LlmDataDist dd(74, LlmRole::kPrompt);
  ASSERT_EQ(dd.Initialize(ClientOptions({{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}})), LLM_SUCCESS);
  std::vector<int32_t> memory(4 * 64 * 16);
  auto cycle = [&] {
    int64_t id = -1;
    std::vector<uint64_t> addrs;
    for (int t = 0; t < 4; ++t) addrs.push_back(reinterpret_cast<uint64_t>(memory.data() + t * 64 * 16));
    ASSERT_EQ(dd.RegisterKvCache(Int32Desc(4, 64, 16), addrs, RegisterCfg{}, id), LLM_SUCCESS);
    ASSERT_EQ(dd.UnregisterKvCache(id), LLM_SUCCESS);
    Cache c;
    ASSERT_EQ(dd.AllocateCache(Int32Desc(4, 64, 16), c), LLM_SUCCESS);
    ASSERT_EQ(dd.DeallocateCache(c.cache_id), LLM_SUCCESS);
  };
  cycle();
  const ResourceCounts before = ResourceCounts::Now();
  for (int i = 0; i < kCycles && !HasFatalFailure(); ++i) cycle();
  const ResourceCounts after = ResourceCounts::Now();
  EXPECT_EQ(after.fds, before.fds);
  EXPECT_EQ(after.threads, before.threads);
  EXPECT_EQ(after.mappings, before.mappings);
  EXPECT_LT(after.heap_bytes, before.heap_bytes + (64 << 10));
}

// --- Concurrency ---

TEST(Concurrency, ManyThreadsPullPushRegisterAndLinkAtOnce) {
  ForkedServer server(kServerId);
  ForkedServer other(75);
  constexpr uint64_t kRowsPerThread = 4, kThreads = 8, kCols = 1024;
  const int64_t remote = server.AllocateInt32(2, kRowsPerThread * kThreads, kCols, 5);
  const int64_t sink = server.RegisterInt32(2, kRowsPerThread * kThreads, kCols, 0);
  LlmDataDist client(76, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, "tcp"}, {OPTION_SYNC_CACHE_WAIT_TIME, "10000"}})),
            LLM_SUCCESS);
  ASSERT_EQ(LinkTo(client, kServerId, server.port()), LLM_SUCCESS);
  Cache local;
  ASSERT_EQ(client.AllocateCache(Int32Desc(2, kRowsPerThread * kThreads, kCols), local), LLM_SUCCESS);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint64_t> rows;
      for (uint64_t r = 0; r < kRowsPerThread; ++r) rows.push_back(t * kRowsPerThread + r);
      for (int i = 0; i < 30; ++i) {
        if (client.PullKvBlocks(CacheIndex{kServerId, remote}, local, rows, rows) != LLM_SUCCESS) ++failures;
        if (client.PushKvBlocks(local, CacheIndex{kServerId, sink}, rows, rows) != LLM_SUCCESS) ++failures;
        std::vector<int32_t> mine(kCols);
        int64_t id = -1;
        if (client.RegisterKvCache(Int32Desc(1, 1, kCols), {reinterpret_cast<uint64_t>(mine.data())}, RegisterCfg{}, id) !=
                LLM_SUCCESS ||
            client.UnregisterKvCache(id) != LLM_SUCCESS)
          ++failures;
      }
    });
  }
  // Meanwhile, link and unlink another cluster over and over.
  threads.emplace_back([&] {
    for (int i = 0; i < 20; ++i) {
      if (LinkTo(client, 75, other.port()) != LLM_SUCCESS || Unlink(client, 75) != LLM_SUCCESS) ++failures;
    }
  });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << LlmDataDist::GetLastErrorMessage();
  for (uint64_t r = 0; r < kRowsPerThread * kThreads; ++r) {
    ASSERT_TRUE(lldd_test::RowHolds(local, 0, r, kCols, 5, 0, r)) << r;
    ASSERT_TRUE(lldd_test::RowHolds(local, 1, r, kCols, 5, 1, r)) << r;
  }
  // What the threads pushed: every row of the sink, read back whole.
  for (uint64_t r = 0; r < kRowsPerThread * kThreads; ++r) {
    for (uint32_t t = 0; t < 2; ++t) {
      std::vector<int32_t> expect(kCols);
      for (uint64_t c = 0; c < kCols; ++c) expect[c] = Pattern(5, t, r, c);
      ASSERT_EQ(server.ReadRow(sink, t, r), expect) << "sink tensor " << t << " row " << r;
    }
  }
}

TEST(Concurrency, FinalizeWhileTransfersAreInFlight) {
  for (const char* backend : {"tcp", "shm"}) {
    SCOPED_TRACE(backend);
    ForkedServer server(kServerId, {{OPTION_TRANSFER_BACKEND, backend}});
    const int64_t remote = server.AllocateInt32(2, 64, 16384, 6);  // 8 MiB
    auto client = std::make_unique<LlmDataDist>(77, LlmRole::kDecoder);
    ASSERT_EQ(client->Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, backend}})), LLM_SUCCESS);
    ASSERT_EQ(LinkTo(*client, kServerId, server.port()), LLM_SUCCESS);
    // One destination per thread: pulls into the same bytes from several
    // threads at once would be a data race of the test's own making.
    std::vector<Cache> locals(4);
    for (Cache& local : locals) ASSERT_EQ(client->AllocateCache(Int32Desc(2, 64, 16384), local), LLM_SUCCESS);
    std::atomic<bool> go{true};
    std::atomic<int> successes{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::vector<uint64_t> all(64);
        for (uint64_t i = 0; i < 64; ++i) all[i] = i;
        while (go) {
          Status st = client->PullKvBlocks(CacheIndex{kServerId, remote}, locals[t], all, all);
          (st == LLM_SUCCESS ? successes : errors)++;
          if (st != LLM_SUCCESS) std::this_thread::yield();
        }
      });
    }
    if (!lldd_test::WaitUntil([&] { return successes.load() >= 8; })) {
      go = false;
      for (auto& th : threads) th.join();
      FAIL() << "8 pulls did not succeed within " << lldd_test::kTestWaitLimit.count() << " s (" << successes.load()
             << " did, " << errors.load() << " failed)";
    }
    auto start = std::chrono::steady_clock::now();
    client->Finalize();
    EXPECT_LT(ElapsedMs(start), 3000);
    // Calls after Finalize fail cleanly.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    go = false;
    for (auto& th : threads) th.join();
    EXPECT_GT(errors.load(), 0);
    client.reset();
    EXPECT_EQ(server.Stop(), 0) << "the server survived the client's teardown";
  }
}

// --- Scale ---

TEST(Scale, OneServerHolds512Clients) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_max < 4096) GTEST_SKIP() << "needs 4096 descriptors, the hard limit is " << limit.rlim_max;
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  ForkedServer server(kServerId, {{OPTION_TRANSFER_BACKEND, "tcp"}});
  constexpr uint64_t kRows = 8, kCols = 16;
  const int64_t remote = server.AllocateInt32(2, kRows, kCols, 8);
  std::vector<std::unique_ptr<LlmDataDist>> clients;
  for (uint64_t i = 0; i < kMaxClusterNum; ++i) {
    auto c = std::make_unique<LlmDataDist>(1000 + i, LlmRole::kDecoder);
    ASSERT_EQ(c->Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, "tcp"}, {OPTION_SYNC_CACHE_WAIT_TIME, "10000"}})),
              LLM_SUCCESS);
    ASSERT_EQ(LinkTo(*c, kServerId, server.port(), "127.0.0.1", 10000), LLM_SUCCESS)
        << "client " << i << ": " << LlmDataDist::GetLastErrorMessage();
    clients.push_back(std::move(c));
  }
  // One more is over the limit, and says so.
  LlmDataDist extra(5000, LlmRole::kDecoder);
  ASSERT_EQ(extra.Initialize(ClientOptions()), LLM_SUCCESS);
  EXPECT_EQ(LinkTo(extra, kServerId, server.port()), LLM_CLUSTER_NUM_EXCEED_LIMIT) << LlmDataDist::GetLastErrorMessage();
  // Every client still moves bytes, each its own row into its own row, and
  // every byte of its cache is checked: the pulled row holds the server's,
  // the others are still zero.
  for (size_t i = 0; i < clients.size(); ++i) {
    const uint32_t src_row = static_cast<uint32_t>(i % kRows), dst_row = static_cast<uint32_t>((i / kRows) % kRows);
    Cache local;
    ASSERT_EQ(clients[i]->AllocateCache(Int32Desc(2, kRows, kCols), local), LLM_SUCCESS);
    for (uint32_t t = 0; t < 2; ++t) std::memset(reinterpret_cast<void*>(local.tensor_addrs[t]), 0, kRows * kCols * 4);
    ASSERT_EQ(clients[i]->PullKvCache(CacheIndex{kServerId, remote, src_row}, local, dst_row),
              LLM_SUCCESS)
        << "client " << i << ": " << LlmDataDist::GetLastErrorMessage();
    for (uint32_t t = 0; t < 2; ++t) {
      const auto* p = reinterpret_cast<const int32_t*>(local.tensor_addrs[t]);
      for (uint64_t r = 0; r < kRows; ++r) {
        const bool ok = r == dst_row ? lldd_test::RowHoldsAt(p + r * kCols, kCols, 8, t, src_row)
                                     : lldd_test::RowIsZeroAt(p + r * kCols, kCols);
        EXPECT_TRUE(ok) << "client " << i << " tensor " << t << " row " << r;
      }
    }
    ASSERT_EQ(clients[i]->DeallocateCache(local.cache_id), LLM_SUCCESS);
  }
  clients.clear();
}

// --- A cut network between real hosts (network namespaces) ---

// `backend` on the client and the far server ("auto" picks tcp here).
void CutLinkMidPullReturnsInTimeAndRelinks(const std::string& backend) {
  lldd_test::NetnsPeerHost host;
  if (!host.unavailable().empty()) GTEST_SKIP() << host.unavailable();
  // Slow the wire so that the pull is surely in flight when the cable goes.
  const bool throttled = host.ThrottlePeerEgress("200mbit");
  ForkedServer far(kServerId, {{lldd_test::kNetnsOption, host.name()},
                               {OPTION_LISTEN_IP_INFO, host.peer_ip() + ":0"},
                               {OPTION_TRANSFER_BACKEND, backend}});
  ForkedServer near(78);  // another link that must keep working
  const uint64_t kRows = 256, kCols = throttled ? 4096 : 65536;  // 8 MiB throttled, else 128 MiB
  const int64_t remote = far.AllocateInt32(2, kRows, kCols, 9);
  const int64_t near_remote = near.AllocateInt32(2, 4, 16, 10);
  LlmDataDist client(79, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions({{OPTION_SYNC_CACHE_WAIT_TIME, "2000"}, {OPTION_TRANSFER_BACKEND, backend}})),
            LLM_SUCCESS);
  ASSERT_EQ(LinkTo(client, kServerId, far.port(), host.peer_ip().c_str()), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  if (backend != "auto") {
    EXPECT_STREQ(client.GetLinkTransport(kServerId), backend.c_str());
  }
  ASSERT_EQ(LinkTo(client, 78, near.port()), LLM_SUCCESS);
  Cache local, near_local;
  ASSERT_EQ(client.AllocateCache(Int32Desc(2, kRows, kCols), local), LLM_SUCCESS);
  ASSERT_EQ(client.AllocateCache(Int32Desc(2, 4, 16), near_local), LLM_SUCCESS);
  std::vector<uint64_t> all(kRows);
  for (uint64_t i = 0; i < kRows; ++i) all[i] = i;

  Status cut_status = LLM_SUCCESS;
  int64_t cut_ms = 0;
  std::thread puller([&] {
    auto start = std::chrono::steady_clock::now();
    cut_status = client.PullKvBlocks(CacheIndex{kServerId, remote}, local, all, all);
    cut_ms = ElapsedMs(start);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(host.SetLinkUp(false));
  // The other link works while the cut one is stuck.
  EXPECT_EQ(client.PullKvCache(CacheIndex{78, near_remote, 1}, near_local, 1), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(lldd_test::RowHolds(near_local, 0, 1, 16, 10, 0, 1));
  puller.join();
  EXPECT_TRUE(cut_status == LLM_TIMEOUT || cut_status == LLM_LINK_FAILED) << std::hex << cut_status;
  EXPECT_LT(cut_ms, 2000 + 1500);
  // Still cut: later calls fail within the wait time too.
  auto start = std::chrono::steady_clock::now();
  Status again = client.PullKvBlocks(CacheIndex{kServerId, remote}, local, {0}, {0});
  EXPECT_NE(again, LLM_SUCCESS);
  EXPECT_LT(ElapsedMs(start), 2000 + 1500);

  ASSERT_TRUE(host.SetLinkUp(true));
  EXPECT_EQ(Unlink(client, kServerId, true), LLM_SUCCESS);
  ASSERT_EQ(LinkTo(client, kServerId, far.port(), host.peer_ip().c_str()), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(client.PullKvBlocks(CacheIndex{kServerId, remote}, local, {5, 6}, {5, 6}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(lldd_test::RowHolds(local, 1, 6, kCols, 9, 1, 6));
}

TEST(Faults, CutLinkMidPullReturnsInTimeAndRelinks) { CutLinkMidPullReturnsInTimeAndRelinks("auto"); }

#ifdef LLM_DATADIST_TEST_UCX
// The same two hosts over UCX (its tcp; a deadline closes the endpoint by force).
TEST(Faults, CutLinkMidPullOverUcxReturnsInTimeAndRelinks) {
  setenv("UCX_TLS", "tcp", 1);
  CutLinkMidPullReturnsInTimeAndRelinks("ucx");
  unsetenv("UCX_TLS");
}
#endif

TEST(Faults, PeerRestartedOnSamePortCanBeRelinked) {
  auto server = std::make_unique<ForkedServer>(kServerId);
  LlmDataDist client(80, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions()), LLM_SUCCESS);
  ASSERT_EQ(LinkTo(client, kServerId, server->port()), LLM_SUCCESS);
  server->Kill();
  server = std::make_unique<ForkedServer>(kServerId);
  // The old link is broken; linking again replaces it without an unlink.
  ASSERT_EQ(LinkTo(client, kServerId, server->port()), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  const int64_t remote = server->AllocateInt32(2, 4, 16, 12);
  Cache local;
  ASSERT_EQ(client.AllocateCache(Int32Desc(2, 4, 16), local), LLM_SUCCESS);
  ASSERT_EQ(client.PullKvCache(CacheIndex{kServerId, remote, 2}, local, 3), LLM_SUCCESS);
  EXPECT_TRUE(lldd_test::RowHolds(local, 0, 3, 16, 12, 0, 2));
}

}  // namespace

namespace {

TEST(Faults, ADuplicateClusterIdIsRefusedWhileTheFirstLives) {
  ForkedServer server(kServerId);
  LlmDataDist first(81, LlmRole::kDecoder);
  LlmDataDist impostor(81, LlmRole::kDecoder);
  ASSERT_EQ(first.Initialize(ClientOptions()), LLM_SUCCESS);
  ASSERT_EQ(impostor.Initialize(ClientOptions()), LLM_SUCCESS);
  ASSERT_EQ(LinkTo(first, kServerId, server.port()), LLM_SUCCESS);
  EXPECT_EQ(LinkTo(impostor, kServerId, server.port()), LLM_LINK_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("already linked"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  const int64_t remote = server.AllocateInt32(2, 4, 16, 13);
  Cache local;
  ASSERT_EQ(first.AllocateCache(Int32Desc(2, 4, 16), local), LLM_SUCCESS);
  EXPECT_EQ(first.PullKvCache(CacheIndex{kServerId, remote, 0}, local), LLM_SUCCESS) << "the first link was harmed";
}

}  // namespace
