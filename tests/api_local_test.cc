// The API within one process: lifecycle, options, caches, local copies.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <utility>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::Int32Desc;
using lldd_test::Pattern;

// A user's own file-scope name, spelled like one of our extension keys: were
// that key a free name in llm_datadist, its unqualified use below would be
// ambiguous (`using namespace llm_datadist;` above) and fail to compile.
constexpr int OPTION_COPY_THREADS = -7;

namespace {

// Helpers the vendor's samples define next to `using namespace llm_datadist;`
// must not clash with anything of ours.
[[maybe_unused]] std::string GetRecentErrMsg() { return "user's own"; }
[[maybe_unused]] int Initialize(int x) { return x; }
[[maybe_unused]] int Link(int x) { return x; }
[[maybe_unused]] int Finalize(int x) { return x; }

std::map<AscendString, AscendString> Opts(std::map<std::string, std::string> extra) {
  return ClientOptions(std::move(extra));
}

TEST(Header, TypesMatchTheContract) {
  static_assert(std::is_same_v<Status, uint32_t>);
  static_assert(std::is_same_v<ge::Status, uint32_t>);
  static_assert(LLM_TIMEOUT == 0x5010B01AU && LLM_OUT_OF_MEMORY == 0x5010B01CU && LLM_FAILED == 0xFFFFFFFFU);
  // The original declares the codes in namespace ge: both spellings name one constant.
  constexpr const Status* in_ge = &ge::LLM_REPEAT_REQUEST;
  static_assert(in_ge == &llm_datadist::LLM_REPEAT_REQUEST);
  static_assert(ge::LLM_PARAM_INVALID == 0x5010B005U && ge::LLM_CACHE_ID_ALREADY_EXIST == 0x5010B017U);
  {
    using namespace ge;  // with llm_datadist's names also in scope: not ambiguous
    static_assert(LLM_NOT_YET_LINK == 0x5010B007U);
  }
  static_assert(DT_BF16 == 27 && ge::DT_FLOAT4_E1M2 == 41 && DT_UNDEFINED == 28);
  CacheIndex two{1, 2};
  EXPECT_EQ(two.batch_index, 0U);
  CacheIndex three{1, 1, 0};
  EXPECT_EQ(three.cache_id, 1);
  KvCacheExtParam ext{};
  EXPECT_EQ(ext.src_layer_range, std::make_pair(-1, -1));
  EXPECT_EQ(ext.tensor_num_per_layer, 2);
  CacheDesc desc;
  EXPECT_EQ(desc.placement, CachePlacement::kDevice);
  EXPECT_EQ(desc.data_type, DT_UNDEFINED);
  std::map<AscendString, AscendString> m{{OPTION_DEVICE_ID, "0"}};
  EXPECT_STREQ(m.begin()->first.GetString(), "llm.DeviceId");
  EXPECT_STREQ(OPTION_TRANSFER_BACKEND, "llm.TransferBackend");
  EXPECT_EQ(GetRecentErrMsg(), "user's own");
}

TEST(Lifecycle, InitializeFinalizeTwiceAndDestroyWithoutFinalize) {
  LlmDataDist dd(1, LlmRole::kPrompt);
  ASSERT_EQ(dd.Initialize(Opts({{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}})), LLM_SUCCESS);
  EXPECT_GT(dd.GetListenPort(), 0);
  EXPECT_EQ(dd.Initialize(Opts({})), LLM_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("already initialized"), std::string::npos);
  dd.Finalize();
  dd.Finalize();
  Cache c;
  EXPECT_NE(dd.AllocateCache(Int32Desc(1, 2, 2), c), LLM_SUCCESS);
  // Initialize again after Finalize, then just destroy.
  ASSERT_EQ(dd.Initialize(Opts({{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}})), LLM_SUCCESS);
  ASSERT_EQ(dd.AllocateCache(Int32Desc(1, 2, 2), c), LLM_SUCCESS);
}

TEST(Lifecycle, BadOptionsNameTheOption) {
  struct Case {
    std::map<std::string, std::string> options;
    const char* needle;
  };
  const Case cases[] = {
      {{{OPTION_LISTEN_IP_INFO, "1.2.3.4"}}, "llm.ListenIpInfo"},
      {{{OPTION_LISTEN_IP_INFO, "127.0.0.1:1,127.0.0.1:2"}}, "llm.ListenIpInfo"},
      {{{OPTION_SYNC_CACHE_WAIT_TIME, "soon"}}, "llm.SyncKvCacheWaitTime"},
      {{{OPTION_ENABLE_SET_ROLE, "yes"}}, "llm.EnableSwitchRole"},
      {{{OPTION_BUF_POOL_CFG, "{not json"}}, "llm.BufPoolCfg"},
      {{{OPTION_LOCAL_COMM_RES, "[]"}}, "llm.LocalCommRes"},
      {{{OPTION_TRANSFER_BACKEND, "carrier-pigeon"}}, "llm.TransferBackend"},
  };
  for (const Case& c : cases) {
    LlmDataDist dd(1, LlmRole::kPrompt);
    EXPECT_EQ(dd.Initialize(Opts(c.options)), LLM_PARAM_INVALID) << c.needle;
    EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find(c.needle), std::string::npos)
        << LlmDataDist::GetLastErrorMessage();
  }
  LlmDataDist no_device(1, LlmRole::kPrompt);
  EXPECT_EQ(no_device.Initialize({}), LLM_PARAM_INVALID);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("llm.DeviceId"), std::string::npos);
}

TEST(Header, ExtensionOptionKeysAreClassConstants) {
  // Unqualified, the name is the user's own (above), not ours.
  EXPECT_EQ(OPTION_COPY_THREADS, -7);
  EXPECT_STREQ(LlmDataDist::OPTION_TCP_CONNECTIONS_PER_LINK, "llm.TcpConnectionsPerLink");
  EXPECT_STREQ(LlmDataDist::OPTION_COPY_THREADS, "llm.CopyThreads");
  EXPECT_STREQ(LlmDataDist::OPTION_LINK_TOKEN, "llm.LinkToken");
  // The library reads them under these keys: a bad value names the key,
  // good values initialize.
  for (const char* key : {LlmDataDist::OPTION_TCP_CONNECTIONS_PER_LINK, LlmDataDist::OPTION_COPY_THREADS}) {
    LlmDataDist dd(1, LlmRole::kPrompt);
    EXPECT_EQ(dd.Initialize(Opts({{key, "65"}})), LLM_PARAM_INVALID) << key;
    EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find(key), std::string::npos)
        << LlmDataDist::GetLastErrorMessage();
  }
  LlmDataDist dd(1, LlmRole::kPrompt);
  EXPECT_EQ(dd.Initialize(Opts({{LlmDataDist::OPTION_TCP_CONNECTIONS_PER_LINK, "2"},
                                {LlmDataDist::OPTION_COPY_THREADS, "1"},
                                {LlmDataDist::OPTION_LINK_TOKEN, "s3cret"}})),
            LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
}

// The test pattern tells every row of every tensor apart: no two rows of
// LargeStripedTransferArrivesIntact's caches (4 tensors x 128 rows of 16384
// int32) begin alike, nor do the same coordinates under another seed. (The
// old formula made tensor 1 row 0 equal tensor 0 row 100.)
TEST(TestPattern, NoTwoRowsAlike) {
  std::set<std::pair<int32_t, int32_t>> starts;
  size_t rows = 0;
  for (int64_t seed : {2, 3})
    for (uint32_t t = 0; t < 4; ++t)
      for (uint64_t r = 0; r < 128; ++r, ++rows) starts.insert({Pattern(seed, t, r, 0), Pattern(seed, t, r, 1)});
  EXPECT_EQ(starts.size(), rows);
  for (uint64_t c : {0, 99, 16383}) EXPECT_NE(Pattern(2, 1, 0, c), Pattern(2, 0, 100, c)) << c;
  // Fill and check agree, and a shifted row does not pass.
  Cache cache;
  std::vector<int32_t> memory(2 * 4 * 16);
  cache.tensor_addrs = {reinterpret_cast<uintptr_t>(memory.data()), reinterpret_cast<uintptr_t>(memory.data() + 64)};
  lldd_test::FillPattern(cache.tensor_addrs, 4, 16, 5);
  EXPECT_TRUE(lldd_test::RowHolds(cache, 1, 2, 16, 5, 1, 2));
  EXPECT_EQ(memory[64 + 2 * 16 + 7], Pattern(5, 1, 2, 7));
  EXPECT_FALSE(lldd_test::RowHolds(cache, 1, 2, 16, 5, 1, 3));
  EXPECT_FALSE(lldd_test::RowHolds(cache, 1, 2, 16, 5, 0, 2));
  std::memmove(&memory[64 + 2 * 16 + 1], &memory[64 + 2 * 16], 15 * sizeof(int32_t));
  EXPECT_FALSE(lldd_test::RowHoldsAt(&memory[64 + 2 * 16], 16, 5, 1, 2));
}

TEST(Caches, IdsArePositiveIncreasingAndNeverReused) {
  LlmDataDist dd(1, LlmRole::kPrompt);
  ASSERT_EQ(dd.Initialize(Opts({})), LLM_SUCCESS);
  Cache a, b;
  ASSERT_EQ(dd.AllocateCache(Int32Desc(2, 4, 4), a), LLM_SUCCESS);
  EXPECT_EQ(a.cache_id, 1);
  ASSERT_EQ(a.tensor_addrs.size(), 2U);
  EXPECT_EQ(a.cache_desc.num_tensors, 2U);
  for (uintptr_t p : a.tensor_addrs) EXPECT_EQ(reinterpret_cast<int32_t*>(p)[15], 0);
  EXPECT_EQ(dd.DeallocateCache(a.cache_id), LLM_SUCCESS);
  EXPECT_EQ(dd.DeallocateCache(a.cache_id), LLM_SUCCESS);  // already freed
  EXPECT_EQ(dd.DeallocateCache(12345), LLM_SUCCESS);       // unknown
  ASSERT_EQ(dd.AllocateCache(Int32Desc(2, 4, 4), b), LLM_SUCCESS);
  EXPECT_EQ(b.cache_id, 2);
  std::vector<int32_t> mem(16);
  int64_t id = 0;
  ASSERT_EQ(dd.RegisterKvCache(Int32Desc(1, 4, 4), {reinterpret_cast<uint64_t>(mem.data())}, RegisterCfg{}, id),
            LLM_SUCCESS);
  EXPECT_EQ(id, 3);
  EXPECT_EQ(dd.UnregisterKvCache(999), LLM_SUCCESS);
  EXPECT_EQ(dd.DeallocateCache(id), LLM_PARAM_INVALID);  // registered, not allocated
  EXPECT_EQ(dd.UnregisterKvCache(b.cache_id), LLM_PARAM_INVALID);
  EXPECT_EQ(dd.UnregisterKvCache(id), LLM_SUCCESS);
}

TEST(Caches, BadDescriptorsAreRefused) {
  LlmDataDist dd(1, LlmRole::kPrompt);
  ASSERT_EQ(dd.Initialize(Opts({})), LLM_SUCCESS);
  Cache c;
  CacheDesc d = Int32Desc(0, 4, 4);
  EXPECT_EQ(dd.AllocateCache(d, c), LLM_PARAM_INVALID);
  d = Int32Desc(1, 4, 4);
  d.shape = {4, 0};
  EXPECT_EQ(dd.AllocateCache(d, c), LLM_PARAM_INVALID);
  d.shape = {};
  EXPECT_EQ(dd.AllocateCache(d, c), LLM_PARAM_INVALID);
  d = Int32Desc(1, 4, 4);
  d.data_type = DT_STRING;
  EXPECT_EQ(dd.AllocateCache(d, c), LLM_PARAM_INVALID);
  d = Int32Desc(1, 4, 4);
  d.shape = {1LL << 40, 1LL << 40};
  EXPECT_EQ(dd.AllocateCache(d, c), LLM_PARAM_INVALID);
  int64_t id = 0;
  EXPECT_EQ(dd.RegisterKvCache(Int32Desc(2, 4, 4), {0x1000}, RegisterCfg{}, id), LLM_PARAM_INVALID);
  EXPECT_EQ(dd.RegisterKvCache(Int32Desc(1, 4, 4), {0}, RegisterCfg{}, id), LLM_PARAM_INVALID);
}

class LocalCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(dd_.Initialize(Opts({})), LLM_SUCCESS);
    ASSERT_EQ(dd_.AllocateCache(Int32Desc(2, 8, 4), src_), LLM_SUCCESS);
    ASSERT_EQ(dd_.AllocateCache(Int32Desc(2, 8, 4), dst_), LLM_SUCCESS);
    lldd_test::FillPattern(src_.tensor_addrs, 8, 4, 1);
  }
  int32_t Dst(uint32_t t, uint64_t r, uint64_t c) const {
    return reinterpret_cast<const int32_t*>(dst_.tensor_addrs[t])[r * 4 + c];
  }
  LlmDataDist dd_{1, LlmRole::kMix};
  Cache src_, dst_;
};

TEST_F(LocalCopyTest, CopyKvCacheWithOffsetAndSize) {
  ASSERT_EQ(dd_.CopyKvCache(src_, dst_, 3, 5), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  ASSERT_EQ(dd_.CopyKvCache(src_, dst_, 2, 1, 4, 8), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 2; ++t) {
    for (uint64_t c = 0; c < 4; ++c) EXPECT_EQ(Dst(t, 5, c), Pattern(1, t, 3, c));
    EXPECT_EQ(Dst(t, 1, 0), 0);
    EXPECT_EQ(Dst(t, 1, 1), Pattern(1, t, 2, 1));
    EXPECT_EQ(Dst(t, 1, 2), Pattern(1, t, 2, 2));
    EXPECT_EQ(Dst(t, 1, 3), 0);
    EXPECT_EQ(Dst(t, 0, 0), 0);
  }
  EXPECT_EQ(dd_.CopyKvCache(src_, dst_, 8, 0), LLM_PARAM_INVALID);
  EXPECT_EQ(dd_.CopyKvCache(src_, dst_, 0, 0, 12, 8), LLM_PARAM_INVALID);
  Cache ghost;
  ghost.cache_id = 77;
  EXPECT_EQ(dd_.CopyKvCache(ghost, dst_), LLM_KV_CACHE_NOT_EXIST);
}

TEST_F(LocalCopyTest, CopyKvBlocksToTwoTargets) {
  ASSERT_EQ(dd_.CopyKvBlocks(src_, dst_, {1, 2, 6}, {{0, 1, 2}, {5, 6, 3}}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  for (uint32_t t = 0; t < 2; ++t)
    for (uint64_t c = 0; c < 4; ++c) {
      EXPECT_EQ(Dst(t, 0, c), Pattern(1, t, 1, c));
      EXPECT_EQ(Dst(t, 1, c), Pattern(1, t, 2, c));
      EXPECT_EQ(Dst(t, 2, c), Pattern(1, t, 6, c));
      EXPECT_EQ(Dst(t, 5, c), Pattern(1, t, 1, c));
      EXPECT_EQ(Dst(t, 6, c), Pattern(1, t, 2, c));
      EXPECT_EQ(Dst(t, 3, c), Pattern(1, t, 6, c));
      EXPECT_EQ(Dst(t, 4, c), 0);
      EXPECT_EQ(Dst(t, 7, c), 0);
    }
}

TEST_F(LocalCopyTest, CopyKvBlocksValidatesEveryTargetFirst) {
  EXPECT_EQ(dd_.CopyKvBlocks(src_, dst_, {1, 2}, {{0, 1}, {5, 8}}), LLM_PARAM_INVALID);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("dst_blocks_list[1]"), std::string::npos);
  EXPECT_EQ(Dst(0, 0, 0), 0) << "the first target was written although the second was invalid";
  EXPECT_EQ(dd_.CopyKvBlocks(src_, dst_, {1, 2}, {{0}}), LLM_PARAM_INVALID);
  EXPECT_EQ(dd_.CopyKvBlocks(src_, dst_, {1}, {}), LLM_PARAM_INVALID);
}

TEST(SetRoleTest, WorksWithoutTheOptionButNeedsNoLinks) {
  LlmDataDist off(1, LlmRole::kPrompt);
  ASSERT_EQ(off.Initialize(Opts({})), LLM_SUCCESS);
  EXPECT_EQ(off.SetRole(LlmRole::kDecoder), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();

  LlmDataDist dd(2, LlmRole::kDecoder);
  ASSERT_EQ(dd.Initialize(Opts({{OPTION_ENABLE_SET_ROLE, "1"}})), LLM_SUCCESS);
  EXPECT_EQ(dd.GetListenPort(), 0);
  ASSERT_EQ(dd.SetRole(LlmRole::kPrompt, {{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  const uint16_t port = dd.GetListenPort();
  ASSERT_GT(port, 0);

  LlmDataDist client(3, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(Opts({})), LLM_SUCCESS);
  std::vector<Status> rets;
  ASSERT_EQ(client.LinkLlmClusters({lldd_test::ClusterAt(2, port)}, rets), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  // The server side sees the link too; SetRole must refuse while it exists.
  Status st = LLM_SUCCESS;
  for (int i = 0; i < 100 && (st = dd.SetRole(LlmRole::kDecoder)) == LLM_SUCCESS; ++i) {
  }
  EXPECT_EQ(st, LLM_EXIST_LINK);
  ASSERT_EQ(client.UnlinkLlmClusters({lldd_test::ClusterAt(2, port)}, rets), LLM_SUCCESS);
  EXPECT_EQ(dd.SetRole(LlmRole::kDecoder), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  EXPECT_EQ(dd.GetListenPort(), 0);
}

}  // namespace
