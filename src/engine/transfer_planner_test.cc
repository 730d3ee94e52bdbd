#include "engine/transfer_planner.h"

#include <gtest/gtest.h>

#include <tuple>

namespace lldd {
namespace {

using llm_datadist::KvCacheExtParam;
using llm_datadist::LLM_PARAM_INVALID;
using Pairs = std::vector<std::pair<uint32_t, uint32_t>>;

CacheLayout Layout(uint32_t num_tensors, uint64_t rows, uint64_t row_bytes) {
  CacheLayout l;
  l.num_tensors = num_tensors;
  l.rows = rows;
  l.row_bytes = row_bytes;
  l.tensor_bytes = rows * row_bytes;
  return l;
}

KvCacheExtParam Ext(std::pair<int32_t, int32_t> src, std::pair<int32_t, int32_t> dst, uint8_t per_layer = 2) {
  KvCacheExtParam e;
  e.src_layer_range = src;
  e.dst_layer_range = dst;
  e.tensor_num_per_layer = per_layer;
  return e;
}

auto Tie(const CopyRange& r) { return std::tie(r.src_tensor, r.src_offset, r.dst_tensor, r.dst_offset, r.length); }

void ExpectRanges(const std::vector<CopyRange>& got, const std::vector<CopyRange>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(Tie(got[i]), Tie(want[i])) << "range " << i << ": got {" << got[i].src_tensor << ", "
                                         << got[i].src_offset << ", " << got[i].dst_tensor << ", "
                                         << got[i].dst_offset << ", " << got[i].length << "}";
  }
}

// ---------------------------------------------------------------- MapTensors

TEST(MapTensorsTest, DefaultRangesMapEveryTensor) {
  Pairs p;
  Result r = MapTensors(KvCacheExtParam{}, Layout(6, 4, 8), Layout(6, 4, 8), &p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(p, (Pairs{{0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}}));
}

TEST(MapTensorsTest, ExplicitRanges) {
  Pairs p;
  // 4 layers of K,V on each side; src layers 1..2 to dst layers 2..3.
  Result r = MapTensors(Ext({1, 2}, {2, 3}), Layout(8, 4, 8), Layout(8, 4, 8), &p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(p, (Pairs{{2, 4}, {3, 5}, {4, 6}, {5, 7}}));

  // Single layer, three tensors per layer, different cache sizes.
  r = MapTensors(Ext({0, 0}, {3, 3}, 3), Layout(3, 4, 8), Layout(12, 4, 8), &p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(p, (Pairs{{0, 9}, {1, 10}, {2, 11}}));

  // Last layer to first.
  r = MapTensors(Ext({3, 3}, {0, 0}, 1), Layout(4, 4, 8), Layout(4, 4, 8), &p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(p, (Pairs{{3, 0}}));
}

TEST(MapTensorsTest, DefaultOnOneSideExplicitOnOther) {
  Pairs p;
  // src has 2 layers, default = [0,1]; dst layers [1,2] of 3.
  Result r = MapTensors(Ext({-1, -1}, {1, 2}), Layout(4, 4, 8), Layout(6, 4, 8), &p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(p, (Pairs{{0, 2}, {1, 3}, {2, 4}, {3, 5}}));
}

TEST(MapTensorsTest, RangesOfDifferentLengthRejected) {
  Pairs p;
  Result r = MapTensors(Ext({0, 1}, {0, 2}), Layout(8, 4, 8), Layout(8, 4, 8), &p);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  // Default ranges over caches of different layer counts differ too.
  EXPECT_EQ(MapTensors(KvCacheExtParam{}, Layout(4, 4, 8), Layout(6, 4, 8), &p).code(), LLM_PARAM_INVALID);
}

TEST(MapTensorsTest, RangePastLastLayerRejected) {
  Pairs p;
  // 8 tensors, 2 per layer: layers 0..3.
  Result r = MapTensors(Ext({3, 4}, {0, 1}), Layout(8, 4, 8), Layout(8, 4, 8), &p);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("src_layer_range"), std::string::npos) << r.message();
  r = MapTensors(Ext({0, 1}, {3, 4}), Layout(8, 4, 8), Layout(8, 4, 8), &p);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("dst_layer_range"), std::string::npos) << r.message();
  EXPECT_EQ(MapTensors(Ext({4, 4}, {0, 0}), Layout(8, 4, 8), Layout(8, 4, 8), &p).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(MapTensors(Ext({0, INT32_MAX}, {0, INT32_MAX}), Layout(8, 4, 8), Layout(8, 4, 8), &p).code(),
            LLM_PARAM_INVALID);
}

TEST(MapTensorsTest, NegativeOrReversedRangeRejected) {
  Pairs p;
  const CacheLayout l = Layout(8, 4, 8);
  for (auto bad : {std::pair<int32_t, int32_t>{-1, 0}, {0, -1}, {-2, -2}, {INT32_MIN, 1}, {2, 1}, {-1, 3}}) {
    SCOPED_TRACE(testing::Message() << "[" << bad.first << ", " << bad.second << "]");
    EXPECT_EQ(MapTensors(Ext(bad, {0, 0}), l, l, &p).code(), LLM_PARAM_INVALID);
    EXPECT_EQ(MapTensors(Ext({0, 0}, bad), l, l, &p).code(), LLM_PARAM_INVALID);
  }
}

TEST(MapTensorsTest, TensorsPerLayerValidated) {
  Pairs p;
  // 0
  EXPECT_EQ(MapTensors(Ext({-1, -1}, {-1, -1}, 0), Layout(4, 4, 8), Layout(4, 4, 8), &p).code(), LLM_PARAM_INVALID);
  // does not divide num_tensors (on either side)
  EXPECT_EQ(MapTensors(Ext({-1, -1}, {-1, -1}, 4), Layout(6, 4, 8), Layout(8, 4, 8), &p).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(MapTensors(Ext({0, 0}, {0, 0}, 4), Layout(8, 4, 8), Layout(6, 4, 8), &p).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(MapTensors(KvCacheExtParam{}, Layout(3, 4, 8), Layout(3, 4, 8), &p).code(), LLM_PARAM_INVALID);
  // larger than num_tensors
  EXPECT_EQ(MapTensors(Ext({0, 0}, {0, 0}, 4), Layout(2, 4, 8), Layout(8, 4, 8), &p).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(MapTensors(Ext({0, 0}, {0, 0}, 255), Layout(8, 4, 8), Layout(8, 4, 8), &p).code(), LLM_PARAM_INVALID);
  // equal to num_tensors: one layer
  Result r = MapTensors(Ext({-1, -1}, {-1, -1}, 3), Layout(3, 4, 8), Layout(3, 4, 8), &p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(p, (Pairs{{0, 0}, {1, 1}, {2, 2}}));
}

TEST(AllTensorsTest, IndexForIndex) {
  Result r;
  Pairs p = AllTensors(Layout(3, 1, 1), Layout(3, 9, 9), &r);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(p, (Pairs{{0, 0}, {1, 1}, {2, 2}}));
  p = AllTensors(Layout(3, 1, 1), Layout(4, 1, 1), &r);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_TRUE(p.empty());
}

// ---------------------------------------------------------------- PlanBlocks

TEST(PlanBlocksTest, NeighbouringPairsMergeIntoOneRangePerTensor) {
  const CacheLayout src = Layout(2, 10, 64);
  const CacheLayout dst = Layout(2, 10, 64);
  std::vector<CopyRange> out;
  Result r = PlanBlocks(src, dst, {1, 2, 3}, {4, 5, 6}, {{0, 0}, {1, 1}}, &out);
  ASSERT_TRUE(r.ok()) << r.message();
  ExpectRanges(out, {{0, 64, 0, 256, 192}, {1, 64, 1, 256, 192}});
}

TEST(PlanBlocksTest, BreakInDestinationSplitsTheRun) {
  const CacheLayout l = Layout(2, 10, 64);
  std::vector<CopyRange> out;
  Result r = PlanBlocks(l, l, {1, 2, 3}, {4, 6, 7}, {{0, 0}, {1, 1}}, &out);
  ASSERT_TRUE(r.ok()) << r.message();
  ExpectRanges(out, {{0, 64, 0, 256, 64}, {0, 128, 0, 384, 128}, {1, 64, 1, 256, 64}, {1, 128, 1, 384, 128}});
}

TEST(PlanBlocksTest, BreakInSourceSplitsTheRun) {
  const CacheLayout l = Layout(1, 10, 16);
  std::vector<CopyRange> out;
  ASSERT_TRUE(PlanBlocks(l, l, {0, 1, 5}, {0, 1, 2}, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 0, 0, 0, 32}, {0, 80, 0, 32, 16}});
}

TEST(PlanBlocksTest, PermutedListsAreNotMergedAcrossOrder) {
  const CacheLayout l = Layout(1, 10, 16);
  std::vector<CopyRange> out;
  // 3->6 alone, then 1->4, 2->5 merged.
  ASSERT_TRUE(PlanBlocks(l, l, {3, 1, 2}, {6, 4, 5}, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 48, 0, 96, 16}, {0, 16, 0, 64, 32}});
  // Descending lists never merge.
  ASSERT_TRUE(PlanBlocks(l, l, {3, 2, 1}, {3, 2, 1}, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 48, 0, 48, 16}, {0, 32, 0, 32, 16}, {0, 16, 0, 16, 16}});
  // Reversing the mapping: 0->9, 9->0.
  ASSERT_TRUE(PlanBlocks(l, l, {0, 9}, {9, 0}, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 0, 0, 144, 16}, {0, 144, 0, 0, 16}});
}

TEST(PlanBlocksTest, TensorPairsAreHonoured) {
  const CacheLayout src = Layout(4, 8, 32);
  const CacheLayout dst = Layout(6, 16, 32);
  std::vector<CopyRange> out;
  ASSERT_TRUE(PlanBlocks(src, dst, {7}, {15}, {{2, 4}, {3, 5}}, &out).ok());
  ExpectRanges(out, {{2, 224, 4, 480, 32}, {3, 224, 5, 480, 32}});
}

TEST(PlanBlocksTest, LastBlockAllowedOnePastRejected) {
  const CacheLayout src = Layout(1, 4, 8);
  const CacheLayout dst = Layout(1, 6, 8);
  std::vector<CopyRange> out;
  EXPECT_TRUE(PlanBlocks(src, dst, {3}, {5}, {{0, 0}}, &out).ok());

  Result r = PlanBlocks(src, dst, {0, 4}, {0, 1}, {{0, 0}}, &out);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("src_blocks[1]"), std::string::npos) << r.message();

  r = PlanBlocks(src, dst, {0, 1}, {6, 1}, {{0, 0}}, &out);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("dst_blocks[0]"), std::string::npos) << r.message();

  EXPECT_EQ(PlanBlocks(src, dst, {UINT64_MAX}, {0}, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanBlocks(src, dst, {0}, {UINT64_MAX}, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
}

TEST(PlanBlocksTest, ListsOfDifferentLengthRejected) {
  const CacheLayout l = Layout(1, 8, 8);
  std::vector<CopyRange> out;
  EXPECT_EQ(PlanBlocks(l, l, {0, 1}, {0}, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanBlocks(l, l, {0}, {0, 1}, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
}

TEST(PlanBlocksTest, EmptyListsRejected) {
  const CacheLayout l = Layout(1, 8, 8);
  std::vector<CopyRange> out;
  EXPECT_EQ(PlanBlocks(l, l, {}, {}, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanBlocks(l, l, {}, {1}, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanBlocks(l, l, {1}, {}, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
}

TEST(PlanBlocksTest, DifferentBlockSizesRejected) {
  std::vector<CopyRange> out;
  Result r = PlanBlocks(Layout(1, 8, 8), Layout(1, 8, 16), {0}, {0}, {{0, 0}}, &out);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
}

TEST(PlanBlocksTest, OutputIsReplacedNotAppended) {
  const CacheLayout l = Layout(1, 8, 8);
  std::vector<CopyRange> out(5);
  ASSERT_TRUE(PlanBlocks(l, l, {0}, {1}, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 0, 0, 8, 8}});
}

// ---------------------------------------------------------------- PlanRow

TEST(PlanRowTest, WholeRow) {
  const CacheLayout src = Layout(2, 4, 100);
  const CacheLayout dst = Layout(2, 8, 100);
  std::vector<CopyRange> out;
  Result r = PlanRow(src, dst, 1, 6, 0, -1, {{0, 0}, {1, 1}}, &out);
  ASSERT_TRUE(r.ok()) << r.message();
  ExpectRanges(out, {{0, 100, 0, 600, 100}, {1, 100, 1, 600, 100}});
}

TEST(PlanRowTest, WholeRowFromOffset) {
  const CacheLayout l = Layout(1, 4, 100);
  std::vector<CopyRange> out;
  ASSERT_TRUE(PlanRow(l, l, 2, 3, 30, -1, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 230, 0, 330, 70}});
  ASSERT_TRUE(PlanRow(l, l, 0, 0, 99, -1, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 99, 0, 99, 1}});
  // An offset at or past the row end leaves nothing to copy.
  EXPECT_EQ(PlanRow(l, l, 0, 0, 100, -1, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanRow(l, l, 0, 0, UINT64_MAX, -1, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
}

TEST(PlanRowTest, ExplicitSize) {
  const CacheLayout l = Layout(1, 4, 100);
  std::vector<CopyRange> out;
  ASSERT_TRUE(PlanRow(l, l, 1, 2, 10, 40, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 110, 0, 210, 40}});
  // Exactly to the end of the row.
  ASSERT_TRUE(PlanRow(l, l, 1, 2, 60, 40, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 160, 0, 260, 40}});
  ASSERT_TRUE(PlanRow(l, l, 0, 0, 0, 100, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 0, 0, 0, 100}});
}

TEST(PlanRowTest, ExplicitSizeWithRowsOfDifferentSize) {
  const CacheLayout src = Layout(1, 4, 100);
  const CacheLayout dst = Layout(1, 4, 60);
  std::vector<CopyRange> out;
  ASSERT_TRUE(PlanRow(src, dst, 1, 1, 10, 50, {{0, 0}}, &out).ok());
  ExpectRanges(out, {{0, 110, 0, 70, 50}});
  // Must fit in the smaller row.
  EXPECT_EQ(PlanRow(src, dst, 1, 1, 10, 51, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanRow(dst, src, 1, 1, 0, 61, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
}

TEST(PlanRowTest, BadSizeRejected) {
  const CacheLayout l = Layout(1, 4, 100);
  std::vector<CopyRange> out;
  for (int64_t size : {int64_t{0}, int64_t{-2}, INT64_MIN}) {
    Result r = PlanRow(l, l, 0, 0, 0, size, {{0, 0}}, &out);
    EXPECT_EQ(r.code(), LLM_PARAM_INVALID) << size;
  }
}

TEST(PlanRowTest, SizeLargerThanRowRejected) {
  const CacheLayout l = Layout(1, 4, 100);
  std::vector<CopyRange> out;
  EXPECT_EQ(PlanRow(l, l, 0, 0, 0, 101, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanRow(l, l, 0, 0, 61, 40, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanRow(l, l, 0, 0, 101, 1, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(PlanRow(l, l, 0, 0, 0, INT64_MAX, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
  // offset + size overflowing 64 bits must not wrap into range.
  EXPECT_EQ(PlanRow(l, l, 0, 0, UINT64_MAX - 5, 10, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
}

TEST(PlanRowTest, BatchIndexOutOfRange) {
  const CacheLayout src = Layout(1, 4, 100);
  const CacheLayout dst = Layout(1, 2, 100);
  std::vector<CopyRange> out;
  EXPECT_TRUE(PlanRow(src, dst, 3, 1, 0, -1, {{0, 0}}, &out).ok());
  Result r = PlanRow(src, dst, 4, 0, 0, -1, {{0, 0}}, &out);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("source batch index 4"), std::string::npos) << r.message();
  r = PlanRow(src, dst, 0, 2, 0, -1, {{0, 0}}, &out);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("destination batch index 2"), std::string::npos) << r.message();
  EXPECT_EQ(PlanRow(src, dst, UINT64_MAX, 0, 0, 1, {{0, 0}}, &out).code(), LLM_PARAM_INVALID);
}

TEST(PlanRowTest, WholeRowNeedsEqualRowSizes) {
  const CacheLayout src = Layout(1, 4, 100);
  const CacheLayout dst = Layout(1, 4, 60);
  std::vector<CopyRange> out;
  Result r = PlanRow(src, dst, 0, 0, 0, -1, {{0, 0}}, &out);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("size -1"), std::string::npos) << r.message();
}

TEST(PlanRowTest, TensorPairsAreHonoured) {
  const CacheLayout src = Layout(4, 2, 10);
  const CacheLayout dst = Layout(4, 2, 10);
  std::vector<CopyRange> out(3);
  ASSERT_TRUE(PlanRow(src, dst, 1, 0, 0, -1, {{2, 0}, {3, 1}}, &out).ok());
  ExpectRanges(out, {{2, 10, 0, 0, 10}, {3, 10, 1, 0, 10}});
}

}  // namespace
}  // namespace lldd
