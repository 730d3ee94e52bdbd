// PushKvRanges and GetRemoteCacheDesc against a peer process: a range lands
// at the peer's (cache, tensor, offset); a range past the peer's tensor, or
// an address outside the peer's caches, is refused before any byte of the
// call moves.
#include <gtest/gtest.h>

#include <string>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;

namespace {

constexpr uint64_t kPeerId = 61;
constexpr uint64_t kLocalId = 62;
constexpr uint64_t kRows = 4, kCols = 16, kRowBytes = kCols * 4;
constexpr int64_t kSeed = 77;
constexpr int64_t kSinkSeed = 5;

class PushRangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    peer_ = std::make_unique<ForkedServer>(kPeerId);
    sink_ = peer_->AllocateInt32(2, kRows, kCols, kSinkSeed);
    ASSERT_GT(sink_, 0);
    local_ = std::make_unique<LlmDataDist>(kLocalId, LlmRole::kPrompt);
    ASSERT_EQ(local_->Initialize(ClientOptions({{OPTION_SYNC_CACHE_WAIT_TIME, "5000"}})), LLM_SUCCESS);
    std::vector<Status> rets;
    ASSERT_EQ(local_->LinkLlmClusters({ClusterAt(kPeerId, peer_->port())}, rets), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    ASSERT_EQ(local_->AllocateCache(Int32Desc(2, kRows, kCols), src_), LLM_SUCCESS);
    lldd_test::FillPattern(src_.tensor_addrs, kRows, kCols, kSeed);
  }
  void TearDown() override {
    local_.reset();
    EXPECT_EQ(peer_->Stop(), 0);
  }
  // Row `row` of the sink's tensor `t` holds row `src_row` of our tensor `src_t` (seed kSeed), or its own.
  bool RowIs(uint32_t t, uint64_t row, int64_t seed, uint32_t src_t, uint64_t src_row) {
    const std::vector<int32_t> got = peer_->ReadRow(sink_, t, row);
    if (got.size() != kCols) return false;
    for (uint64_t c = 0; c < kCols; ++c)
      if (got[c] != lldd_test::Pattern(seed, src_t, src_row, c)) return false;
    return true;
  }
  LlmDataDist::RangeCopy Row(uint32_t src_t, uint64_t src_row, uint32_t dst_t, uint64_t dst_row) const {
    LlmDataDist::RangeCopy r;
    r.src_tensor = src_t;
    r.src_offset = src_row * kRowBytes;
    r.length = kRowBytes;
    r.dst_cache_id = sink_;
    r.dst_tensor = dst_t;
    r.dst_offset = dst_row * kRowBytes;
    return r;
  }

  std::unique_ptr<ForkedServer> peer_;
  std::unique_ptr<LlmDataDist> local_;
  int64_t sink_ = -1;
  Cache src_;
};

TEST_F(PushRangesTest, RangesLandWhereTheyAreNamed) {
  ASSERT_EQ(local_->PushKvRanges(src_, kPeerId, {Row(1, 1, 0, 2), Row(0, 3, 1, 0)}), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(RowIs(0, 2, kSeed, 1, 1));
  EXPECT_TRUE(RowIs(1, 0, kSeed, 0, 3));
  EXPECT_TRUE(RowIs(0, 1, kSinkSeed, 0, 1));  // neighbours untouched
  EXPECT_TRUE(RowIs(0, 3, kSinkSeed, 0, 3));

  CacheDesc desc;
  ASSERT_EQ(local_->GetRemoteCacheDesc(kPeerId, sink_, desc), LLM_SUCCESS);
  EXPECT_EQ(desc.num_tensors, 2u);
  EXPECT_EQ(desc.shape, (std::vector<int64_t>{kRows, kCols}));
  EXPECT_EQ(local_->GetRemoteCacheDesc(kPeerId, sink_ + 100, desc), LLM_KV_CACHE_NOT_EXIST);
}

TEST_F(PushRangesTest, BadRangesWriteNothing) {
  auto past_end = Row(0, 0, 1, 3);
  past_end.dst_offset += 4;  // the last row, 4 bytes too far
  EXPECT_EQ(local_->PushKvRanges(src_, kPeerId, {Row(1, 1, 0, 2), past_end}), LLM_PARAM_INVALID);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("are not inside cache"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(RowIs(0, 2, kSinkSeed, 0, 2));  // the good range did not move either

  auto nowhere = Row(0, 0, 0, 0);
  nowhere.dst_cache_id = 0;  // dst_offset is now an address of the peer's process
  nowhere.dst_offset = 4096;
  EXPECT_EQ(local_->PushKvRanges(src_, kPeerId, {nowhere}), LLM_PARAM_INVALID);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("not inside a cache the peer allocated or registered"),
            std::string::npos)
      << LlmDataDist::GetLastErrorMessage();

  auto bad_src = Row(2, 0, 0, 0);  // we have tensors 0 and 1
  EXPECT_EQ(local_->PushKvRanges(src_, kPeerId, {bad_src}), LLM_PARAM_INVALID);
  EXPECT_EQ(local_->PushKvRanges(src_, kPeerId, {}), LLM_PARAM_INVALID);
  for (uint64_t row = 0; row < kRows; ++row) EXPECT_TRUE(RowIs(0, row, kSinkSeed, 0, row)) << row;
}

}  // namespace
