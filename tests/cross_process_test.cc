// Prefill (a forked server process) and decode (this process) on loopback:
// real links, real bytes, every row checked, untouched rows included.
#include <gtest/gtest.h>

#include <chrono>
#include <numeric>
#include <random>
#include <thread>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;
using lldd_test::Pattern;

namespace {

constexpr uint64_t kServerId = 1;
constexpr uint64_t kClientId = 2;
constexpr uint64_t kRows = 8;
constexpr uint64_t kCols = 16;

// A client-side cache in user memory (RegisterKvCache), zero-filled.
struct UserCache {
  std::vector<std::vector<int32_t>> tensors;
  Cache cache;
  uint64_t rows = 0, cols = 0;
  UserCache(LlmDataDist& dd, uint32_t n, uint64_t r, uint64_t c) : rows(r), cols(c) {
    tensors.assign(n, std::vector<int32_t>(r * c, 0));
    std::vector<uint64_t> addrs;
    for (auto& t : tensors) addrs.push_back(reinterpret_cast<uint64_t>(t.data()));
    int64_t id = -1;
    EXPECT_EQ(dd.RegisterKvCache(Int32Desc(n, r, c), addrs, RegisterCfg{}, id), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    cache.cache_id = id;
  }
  int32_t at(uint32_t t, uint64_t r, uint64_t c) const { return tensors[t][r * cols + c]; }
  bool RowIs(uint32_t t, uint64_t r, int64_t seed, uint32_t src_tensor, uint64_t src_row) const {
    for (uint64_t c = 0; c < cols; ++c)
      if (at(t, r, c) != Pattern(seed, src_tensor, src_row, c)) return false;
    return true;
  }
  bool RowIsZero(uint32_t t, uint64_t r) const {
    for (uint64_t c = 0; c < cols; ++c)
      if (at(t, r, c) != 0) return false;
    return true;
  }
};

// Every test runs over each data path; both ends force it. "ucx:<tls>" is
// the UCX path with UCX_TLS=<tls> in both processes.
class CrossProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string Backend() const { return GetParam().substr(0, GetParam().find(':')); }
  void SetUp() override {
    auto colon = GetParam().find(':');
    if (colon != std::string::npos) setenv("UCX_TLS", GetParam().substr(colon + 1).c_str(), 1);
    server_ = std::make_unique<ForkedServer>(kServerId, std::map<std::string, std::string>{{OPTION_TRANSFER_BACKEND, Backend()}});
    client_ = std::make_unique<LlmDataDist>(kClientId, LlmRole::kDecoder);
    ASSERT_EQ(client_->Initialize(ClientOptions({{OPTION_SYNC_CACHE_WAIT_TIME, "5000"}, {OPTION_TRANSFER_BACKEND, Backend()}})),
              LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    std::vector<Status> rets;
    ASSERT_EQ(client_->LinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets, 3000), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    ASSERT_EQ(rets, std::vector<Status>{LLM_SUCCESS});
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(), 0);
    }
    unsetenv("UCX_TLS");
  }
  std::unique_ptr<ForkedServer> server_;
  std::unique_ptr<LlmDataDist> client_;
};

TEST_P(CrossProcessTest, VendorSampleSequence) {
  const int64_t remote = server_->RegisterInt32(4, kRows, kCols, 1);
  ASSERT_GT(remote, 0);
  UserCache local(*client_, 4, kRows, kCols);

  ASSERT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, remote, 0}, local.cache, {1, 2, 3}, {1, 2, 3}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 4; ++t) {
    EXPECT_TRUE(local.RowIsZero(t, 0));
    for (uint64_t r = 1; r <= 3; ++r) EXPECT_TRUE(local.RowIs(t, r, 1, t, r)) << "tensor " << t << " row " << r;
    for (uint64_t r = 4; r < kRows; ++r) EXPECT_TRUE(local.RowIsZero(t, r));
  }

  ASSERT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 0}, local.cache, 0), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 4; ++t) {
    for (uint64_t r = 0; r <= 3; ++r) EXPECT_TRUE(local.RowIs(t, r, 1, t, r));
    for (uint64_t r = 4; r < kRows; ++r) EXPECT_TRUE(local.RowIsZero(t, r));
  }
  EXPECT_EQ(client_->GetLinkTransport(kServerId), Backend());
}

TEST_P(CrossProcessTest, PermutedBlockLists) {
  const int64_t remote = server_->AllocateInt32(4, kRows, kCols, 3);
  ASSERT_GT(remote, 0);
  UserCache local(*client_, 4, kRows, kCols);
  const std::vector<uint64_t> src{5, 0, 3, 7, 6};
  const std::vector<uint64_t> dst{2, 6, 1, 4, 5};
  ASSERT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, remote}, local.cache, src, dst), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 4; ++t) {
    for (size_t i = 0; i < src.size(); ++i) EXPECT_TRUE(local.RowIs(t, dst[i], 3, t, src[i]));
    EXPECT_TRUE(local.RowIsZero(t, 0));
    EXPECT_TRUE(local.RowIsZero(t, 3));
    EXPECT_TRUE(local.RowIsZero(t, 7));
  }
}

TEST_P(CrossProcessTest, BatchIndexMappingAndPartialSize) {
  const int64_t remote = server_->RegisterInt32(2, kRows, kCols, 4);
  UserCache local(*client_, 2, kRows, kCols);
  ASSERT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 3}, local.cache, 6), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  // size limits the bytes per tensor: 6 int32 of row 5 into row 1.
  ASSERT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 5}, local.cache, 1, 6 * sizeof(int32_t)), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 2; ++t) {
    EXPECT_TRUE(local.RowIs(t, 6, 4, t, 3));
    for (uint64_t c = 0; c < kCols; ++c)
      EXPECT_EQ(local.at(t, 1, c), c < 6 ? Pattern(4, t, 5, c) : 0) << "tensor " << t << " col " << c;
    for (uint64_t r : {0, 2, 3, 4, 5, 7}) EXPECT_TRUE(local.RowIsZero(t, r));
  }
}

TEST_P(CrossProcessTest, LayerRangeMovesOnlyThoseLayers) {
  const int64_t remote = server_->RegisterInt32(4, kRows, kCols, 5);  // 2 layers of K,V
  UserCache local(*client_, 4, kRows, kCols);
  KvCacheExtParam ext;
  ext.src_layer_range = {1, 1};
  ext.dst_layer_range = {0, 0};
  ASSERT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, remote}, local.cache, {2, 3}, {0, 1}, ext), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 2; ++t) {
    EXPECT_TRUE(local.RowIs(t, 0, 5, t + 2, 2));
    EXPECT_TRUE(local.RowIs(t, 1, 5, t + 2, 3));
  }
  for (uint32_t t = 2; t < 4; ++t)
    for (uint64_t r = 0; r < kRows; ++r) EXPECT_TRUE(local.RowIsZero(t, r));

  // One tensor per layer: layer range [1,2] of 4 layers into [2,3].
  ext.tensor_num_per_layer = 1;
  ext.src_layer_range = {1, 2};
  ext.dst_layer_range = {2, 3};
  ASSERT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 7}, local.cache, 7, -1, ext), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(local.RowIs(2, 7, 5, 1, 7));
  EXPECT_TRUE(local.RowIs(3, 7, 5, 2, 7));
  EXPECT_TRUE(local.RowIsZero(0, 7));
  EXPECT_TRUE(local.RowIsZero(1, 7));
}

TEST_P(CrossProcessTest, PushThenPullBack) {
  const int64_t remote = server_->RegisterInt32(2, kRows, kCols, 6);
  Cache mine;
  ASSERT_EQ(client_->AllocateCache(Int32Desc(2, kRows, kCols), mine), LLM_SUCCESS);
  lldd_test::FillPattern(mine.tensor_addrs, kRows, kCols, 9);

  ASSERT_EQ(client_->PushKvBlocks(mine, CacheIndex{kServerId, remote}, {0, 1}, {4, 5}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(client_->PushKvCache(mine, CacheIndex{kServerId, remote, 7}, 2), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 2; ++t) {
    std::vector<int32_t> expect(kCols);
    for (uint64_t c = 0; c < kCols; ++c) expect[c] = Pattern(9, t, 0, c);
    EXPECT_EQ(server_->ReadRow(remote, t, 4), expect);
    for (uint64_t c = 0; c < kCols; ++c) expect[c] = Pattern(9, t, 1, c);
    EXPECT_EQ(server_->ReadRow(remote, t, 5), expect);
    for (uint64_t c = 0; c < kCols; ++c) expect[c] = Pattern(9, t, 2, c);
    EXPECT_EQ(server_->ReadRow(remote, t, 7), expect);
    for (uint64_t c = 0; c < kCols; ++c) expect[c] = Pattern(6, t, 3, c);
    EXPECT_EQ(server_->ReadRow(remote, t, 3), expect) << "a row that was not pushed changed";
  }

  UserCache back(*client_, 2, kRows, kCols);
  ASSERT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, remote}, back.cache, {4, 5, 7}, {0, 1, 2}), LLM_SUCCESS);
  for (uint32_t t = 0; t < 2; ++t) {
    EXPECT_TRUE(back.RowIs(t, 0, 9, t, 0));
    EXPECT_TRUE(back.RowIs(t, 1, 9, t, 1));
    EXPECT_TRUE(back.RowIs(t, 2, 9, t, 2));
  }
}

TEST_P(CrossProcessTest, ServerPullsAndPushesOverTheSameLink) {
  Cache mine;
  ASSERT_EQ(client_->AllocateCache(Int32Desc(2, kRows, kCols), mine), LLM_SUCCESS);
  lldd_test::FillPattern(mine.tensor_addrs, kRows, kCols, 11);
  const int64_t server_cache = server_->RegisterInt32(2, kRows, kCols, 12);
  // The server pulls batch 0 of our cache into its own, then pushes its batch 0 back.
  EXPECT_EQ(server_->Command("pull " + std::to_string(kClientId) + " " + std::to_string(mine.cache_id) + " " +
                             std::to_string(server_cache)),
            "0x0");
  for (uint32_t t = 0; t < 2; ++t) {
    std::vector<int32_t> expect(kCols);
    for (uint64_t c = 0; c < kCols; ++c) expect[c] = Pattern(11, t, 0, c);
    EXPECT_EQ(server_->ReadRow(server_cache, t, 0), expect) << "tensor " << t;
    for (uint64_t c = 0; c < kCols; ++c) expect[c] = Pattern(12, t, 1, c);
    EXPECT_EQ(server_->ReadRow(server_cache, t, 1), expect) << "tensor " << t << ": a row that was not pulled changed";
  }

  // Our row 0 is overwritten; the push must bring back every byte of it.
  for (uint32_t t = 0; t < 2; ++t) lldd_test::StoreInts(reinterpret_cast<int32_t*>(mine.tensor_addrs[t]), kCols, -1);
  EXPECT_EQ(server_->Command("push " + std::to_string(kClientId) + " " + std::to_string(mine.cache_id) + " " +
                             std::to_string(server_cache)),
            "0x0");
  for (uint32_t t = 0; t < 2; ++t) {
    const auto* p = reinterpret_cast<const int32_t*>(mine.tensor_addrs[t]);
    EXPECT_TRUE(lldd_test::RowHoldsAt(p, kCols, 11, t, 0)) << "tensor " << t << " row 0";
    for (uint64_t r = 1; r < kRows; ++r)
      EXPECT_TRUE(lldd_test::RowHoldsAt(p + r * kCols, kCols, 11, t, r)) << "tensor " << t << " row " << r;
  }
}

TEST_P(CrossProcessTest, RegistrationAfterLinkIsReachableAndUnregisterRevokes) {
  UserCache local(*client_, 2, kRows, kCols);
  const int64_t late = server_->RegisterInt32(2, kRows, kCols, 13);
  ASSERT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, late}, local.cache, {1}, {1}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(local.RowIs(0, 1, 13, 0, 1));

  ASSERT_EQ(server_->Command("unregister " + std::to_string(late)), "ok");
  EXPECT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, late}, local.cache, {2}, {2}), LLM_KV_CACHE_NOT_EXIST);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("not"), std::string::npos);
  EXPECT_TRUE(local.RowIsZero(0, 2));
  EXPECT_TRUE(local.RowIsZero(1, 2));
}

TEST_P(CrossProcessTest, LargeStripedTransferArrivesIntact) {
  // 4 tensors x 128 blocks x 64 KiB = 32 MiB, several connections at once.
  constexpr uint64_t rows = 128, cols = 16384;
  const int64_t remote = server_->AllocateInt32(4, rows, cols, 2);
  ASSERT_GT(remote, 0);
  UserCache local(*client_, 4, rows, cols);
  std::vector<uint64_t> src(rows), dst(rows);
  std::iota(src.begin(), src.end(), 0);
  std::iota(dst.begin(), dst.end(), 0);
  std::mt19937 rng(42);
  std::shuffle(dst.begin() + 64, dst.end(), rng);  // half merged runs, half scattered
  ASSERT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, remote}, local.cache, src, dst), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 4; ++t)
    for (uint64_t i = 0; i < rows; ++i) ASSERT_TRUE(local.RowIs(t, dst[i], 2, t, src[i])) << t << " " << i;
}

TEST_P(CrossProcessTest, UnlinkThenPullFailsAndRelinkWorks) {
  const int64_t remote = server_->RegisterInt32(2, kRows, kCols, 14);
  UserCache local(*client_, 2, kRows, kCols);
  std::vector<Status> rets;
  ASSERT_EQ(client_->UnlinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_EQ(rets, std::vector<Status>{LLM_SUCCESS});
  EXPECT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 0}, local.cache), LLM_NOT_YET_LINK);
  EXPECT_TRUE(local.RowIsZero(0, 0));
  EXPECT_EQ(client_->UnlinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets), LLM_NOT_YET_LINK);

  ASSERT_EQ(client_->LinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 0}, local.cache), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(local.RowIs(1, 0, 14, 1, 0));
}

TEST_P(CrossProcessTest, DeadServerFailsFastAndForceUnlinkCleansUp) {
  const int64_t remote = server_->RegisterInt32(2, kRows, kCols, 15);
  UserCache local(*client_, 2, kRows, kCols);
  server_->Kill();
  server_.reset();
  auto start = std::chrono::steady_clock::now();
  Status st = client_->PullKvCache(CacheIndex{kServerId, remote, 0}, local.cache);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(st == LLM_LINK_FAILED || st == LLM_TIMEOUT) << std::hex << st;
  EXPECT_LT(ms, 5000 + 2000);  // the wait time, plus scheduling slack
  EXPECT_TRUE(local.RowIsZero(0, 0));
  std::vector<Status> rets;
  EXPECT_EQ(client_->UnlinkLlmClusters({ClusterAt(kServerId, 1)}, rets, 1000, true), LLM_SUCCESS);
  EXPECT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 0}, local.cache), LLM_NOT_YET_LINK);
}

TEST_P(CrossProcessTest, HungServerTimesOutWithinWaitTime) {
  const int64_t remote = server_->RegisterInt32(2, kRows, kCols, 16);
  UserCache local(*client_, 2, kRows, kCols);
  // A first pull so that the cache description is known; then the peer freezes.
  ASSERT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 0}, local.cache), LLM_SUCCESS);
  server_->Freeze();
  auto start = std::chrono::steady_clock::now();
  if (GetParam() == "shm") {
    // Same host: the frozen peer is not needed to read its memory.
    EXPECT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 1}, local.cache, 1), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    EXPECT_TRUE(local.RowIs(0, 1, 16, 0, 1));
    server_->Kill();
    server_.reset();
    return;
  }
  EXPECT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 1}, local.cache, 1), LLM_TIMEOUT)
      << LlmDataDist::GetLastErrorMessage();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(ms, 4900);
  EXPECT_LT(ms, 5000 + 2000);
  EXPECT_TRUE(local.RowIsZero(0, 1));
  server_->Kill();
  server_.reset();
}

// The vendor's role-switch samples (hicann/hixl examples/cpp/
// prompt_switch_roles.cpp and decoder_switch_roles.cpp), step by step, with
// the prompt side in a forked process: the same cluster ids, cache shape,
// calls and arguments. Neither side sets llm.EnableSwitchRole, as in the
// samples. Their sleeps become the order the parent drives the steps in.
class RoleSwitchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RoleSwitchTest, VendorSwitchRolesSamples) {
  constexpr uint64_t kPromptId = 0, kDecoderId = 1;
  constexpr int64_t kSeed = 21;
  // Prompt 1-2: a server (port A) registers 4 tensors of int32 [8, 16].
  ForkedServer prompt(kPromptId, {{OPTION_TRANSFER_BACKEND, GetParam()}});
  const int64_t prompt_cache = prompt.RegisterInt32(4, kRows, kCols, kSeed);
  ASSERT_GT(prompt_cache, 0);
  // Decoder 1-2: a client registers a zero-filled cache of the same shape.
  LlmDataDist decoder(kDecoderId, LlmRole::kDecoder);
  ASSERT_EQ(decoder.Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, GetParam()}})), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  UserCache local(decoder, 4, kRows, kCols);
  ASSERT_GT(local.cache.cache_id, 0);

  // Decoder 4-5: link to the prompt, pull blocks 1-3, then batch 0.
  std::vector<Status> rets;
  ASSERT_EQ(decoder.LinkLlmClusters({ClusterAt(kPromptId, prompt.port())}, rets), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(decoder.PullKvBlocks(CacheIndex{kPromptId, prompt_cache, 0}, local.cache, {1, 2, 3}, {1, 2, 3}),
            LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(decoder.PullKvCache(CacheIndex{kPromptId, prompt_cache, 0}, local.cache, 0), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 4; ++t) {
    for (uint64_t r = 0; r < 4; ++r) EXPECT_TRUE(local.RowIs(t, r, kSeed, t, r)) << "tensor " << t << " row " << r;
    for (uint64_t r = 4; r < kRows; ++r) EXPECT_TRUE(local.RowIsZero(t, r)) << "tensor " << t << " row " << r;
  }
  // A role switch needs the links gone first.
  const std::map<AscendString, AscendString> listen{{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}};
  EXPECT_EQ(decoder.SetRole(LlmRole::kPrompt, listen), LLM_EXIST_LINK);

  // Decoder 6-7: unlink, then become a server (port B).
  ASSERT_EQ(decoder.UnlinkLlmClusters({ClusterAt(kPromptId, prompt.port())}, rets), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(decoder.SetRole(LlmRole::kPrompt, listen), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  const uint16_t port_b = decoder.GetListenPort();
  ASSERT_NE(port_b, 0);

  // Prompt 4-5: become a client (no options), link to the decoder.
  ASSERT_EQ(prompt.Command("setrole " + std::to_string(static_cast<int>(LlmRole::kDecoder))), "0x0");
  ASSERT_EQ(prompt.Command("link " + std::to_string(kDecoderId) + " 127.0.0.1 " + std::to_string(port_b)), "0x0");
  EXPECT_EQ(decoder.GetLinkTransport(kPromptId), GetParam());

  // Prompt 6: push blocks 5-7 one tensor (layer of 1) at a time, then
  // batch 4 of all four tensors (one layer of 4).
  const std::string ids = std::to_string(kDecoderId) + " " + std::to_string(local.cache.cache_id) + " " +
                          std::to_string(prompt_cache);
  for (int i = 0; i < 4; ++i) {
    const std::string layer = std::to_string(i);
    EXPECT_EQ(prompt.Command("pushblocks " + ids + " 1 " + layer + " " + layer + " " + layer + " " + layer +
                             " 3 5 6 7 5 6 7"),
              "0x0")
        << "tensor " << i;
  }
  EXPECT_EQ(prompt.Command("pushbatch " + ids + " 4 0 0 0 0 4 4"), "0x0");

  // Decoder 8: every byte of every tensor is the prompt's (the rows pulled
  // before the switch and the rows pushed after it).
  for (uint32_t t = 0; t < 4; ++t) {
    const int32_t* p = local.tensors[t].data();
    for (uint64_t r = 0; r < kRows; ++r)
      EXPECT_TRUE(lldd_test::RowHoldsAt(p + r * kCols, kCols, kSeed, t, r)) << "tensor " << t << " row " << r;
  }

  // Prompt 7 and decoder 9: Finalize, the prompt with its link still up.
  EXPECT_EQ(prompt.Stop(), 0);
  decoder.Finalize();
}

INSTANTIATE_TEST_SUITE_P(DataPaths, RoleSwitchTest, ::testing::Values("tcp", "shm"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// After a transfer timed out on a frozen peer (UCX: its endpoint was closed
// by force), no late byte lands once the peer runs again, and a re-link
// brings the path back.
TEST_P(CrossProcessTest, FrozenPeerTimeoutThenRelinkWorks) {
  if (Backend() == "shm") GTEST_SKIP() << "a frozen peer does not stop a same-host read";
  constexpr uint64_t rows = 64, cols = 16384;  // 4 MiB per tensor
  const int64_t remote = server_->RegisterInt32(2, rows, cols, 17);
  UserCache local(*client_, 2, rows, cols);
  ASSERT_EQ(client_->PullKvCache(CacheIndex{kServerId, remote, 0}, local.cache), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(local.RowIs(1, 0, 17, 1, 0));
  std::vector<uint64_t> all(rows);
  std::iota(all.begin(), all.end(), 0);
  std::vector<uint64_t> later(all.begin() + 1, all.end());
  server_->Freeze();
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, remote}, local.cache, later, later), LLM_TIMEOUT)
      << LlmDataDist::GetLastErrorMessage();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(ms, 5000 + 2000);
  server_->Thaw();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (uint32_t t = 0; t < 2; ++t)
    for (uint64_t r = 1; r < rows; ++r) ASSERT_TRUE(local.RowIsZero(t, r)) << "late write into tensor " << t << " row " << r;

  std::vector<Status> rets;
  EXPECT_EQ(client_->UnlinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets, 3000, true), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(client_->LinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets, 3000), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_EQ(client_->GetLinkTransport(kServerId), Backend());
  ASSERT_EQ(client_->PullKvBlocks(CacheIndex{kServerId, remote}, local.cache, all, all), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 2; ++t)
    for (uint64_t r = 0; r < rows; ++r) ASSERT_TRUE(local.RowIs(t, r, 17, t, r)) << t << " " << r;
}

// Over UCX's tcp lanes a peer that kept our keys could still write our
// memory: when it does not confirm a revocation (here: it is frozen),
// DeallocateCache keeps the memory (still mapped) instead of freeing it,
// succeeds, and closes the link. (Once, on UCX's tcp: it waits out the
// full confirmation time.)
TEST_P(CrossProcessTest, UnconfirmedRevocationOverUcxKeepsAllocatedMemory) {
  if (GetParam() != "ucx:tcp") GTEST_SKIP() << "UCX over tcp only";
  const int64_t theirs = server_->RegisterInt32(1, kRows, kCols, 0);
  Cache mine;
  ASSERT_EQ(client_->AllocateCache(Int32Desc(1, kRows, kCols), mine), LLM_SUCCESS);
  lldd_test::FillPattern(mine.tensor_addrs, kRows, kCols, 23);
  // The server pulls from us: it has our keys (and our worker's address).
  ASSERT_EQ(server_->Command("pull " + std::to_string(kClientId) + " " + std::to_string(mine.cache_id) + " " +
                             std::to_string(theirs)),
            "0x0");
  const size_t mapped = lldd_test::ResourceCounts::Now().mappings;
  server_->Freeze();
  EXPECT_EQ(client_->DeallocateCache(mine.cache_id), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  EXPECT_EQ(lldd_test::ResourceCounts::Now().mappings, mapped) << "the memory was freed";
  UserCache local(*client_, 1, kRows, kCols);
  EXPECT_EQ(client_->PullKvCache(CacheIndex{kServerId, theirs, 0}, local.cache), LLM_LINK_FAILED)
      << "the link stayed up";
  server_->Thaw();
}

// UCX runs on its own tcp, and with shared memory allowed (UCX 1.13 cannot
// use posix/sysv/cma for endpoints in error mode PEER, so "sm,tcp" ends up
// on tcp lanes: see src/transport/ucx/ucx_transport_test.cc).
INSTANTIATE_TEST_SUITE_P(DataPaths, CrossProcessTest,
                         ::testing::ValuesIn([] {
                           std::vector<std::string> paths{"tcp", "shm"};
#ifdef LLM_DATADIST_TEST_UCX
                           paths.push_back("ucx:tcp");
                           paths.push_back("ucx:sm,tcp");
#endif
                           return paths;
                         }()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
