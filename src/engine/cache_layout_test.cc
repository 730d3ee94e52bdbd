#include "engine/cache_layout.h"

#include <gtest/gtest.h>

#include "control/protocol.h"

namespace lldd {
namespace {

using namespace llm_datadist;  // NOLINT: DT_* and codes

CacheDesc Desc(uint32_t num_tensors, DataType type, std::vector<int64_t> shape) {
  CacheDesc d;
  d.placement = CachePlacement::kHost;
  d.num_tensors = num_tensors;
  d.data_type = type;
  d.shape = std::move(shape);
  return d;
}

TEST(DataTypeBitsTest, KnownTypes) {
  EXPECT_EQ(DataTypeBits(DT_BOOL), 8u);
  EXPECT_EQ(DataTypeBits(DT_INT8), 8u);
  EXPECT_EQ(DataTypeBits(DT_UINT8), 8u);
  EXPECT_EQ(DataTypeBits(DT_FLOAT8_E4M3FN), 8u);
  EXPECT_EQ(DataTypeBits(DT_FLOAT16), 16u);
  EXPECT_EQ(DataTypeBits(DT_BF16), 16u);
  EXPECT_EQ(DataTypeBits(DT_INT16), 16u);
  EXPECT_EQ(DataTypeBits(DT_FLOAT), 32u);
  EXPECT_EQ(DataTypeBits(DT_INT32), 32u);
  EXPECT_EQ(DataTypeBits(DT_UINT32), 32u);
  EXPECT_EQ(DataTypeBits(DT_COMPLEX32), 32u);
  EXPECT_EQ(DataTypeBits(DT_INT64), 64u);
  EXPECT_EQ(DataTypeBits(DT_DOUBLE), 64u);
  EXPECT_EQ(DataTypeBits(DT_COMPLEX64), 64u);
  EXPECT_EQ(DataTypeBits(DT_COMPLEX128), 128u);
  EXPECT_EQ(DataTypeBits(DT_FLOAT6_E3M2), 6u);
  EXPECT_EQ(DataTypeBits(DT_INT4), 4u);
  EXPECT_EQ(DataTypeBits(DT_FLOAT4_E2M1), 4u);
  EXPECT_EQ(DataTypeBits(DT_INT2), 2u);
  EXPECT_EQ(DataTypeBits(DT_UINT2), 2u);
  EXPECT_EQ(DataTypeBits(DT_UINT1), 1u);
}

TEST(DataTypeBitsTest, TypesWithoutFixedSize) {
  EXPECT_EQ(DataTypeBits(DT_STRING), 0u);
  EXPECT_EQ(DataTypeBits(DT_STRING_REF), 0u);
  EXPECT_EQ(DataTypeBits(DT_RESOURCE), 0u);
  EXPECT_EQ(DataTypeBits(DT_DUAL), 0u);
  EXPECT_EQ(DataTypeBits(DT_VARIANT), 0u);
  EXPECT_EQ(DataTypeBits(DT_UNDEFINED), 0u);
  EXPECT_EQ(DataTypeBits(DT_MAX), 0u);
}

TEST(ComputeLayoutTest, Int32) {
  CacheLayout l;
  Result r = ComputeLayout(Desc(4, DT_INT32, {8, 16}), &l);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(l.num_tensors, 4u);
  EXPECT_EQ(l.rows, 8u);
  EXPECT_EQ(l.row_bytes, 64u);
  EXPECT_EQ(l.tensor_bytes, 512u);
}

TEST(ComputeLayoutTest, Bf16MultiDim) {
  CacheLayout l;
  Result r = ComputeLayout(Desc(2, DT_BF16, {3, 4, 5}), &l);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(l.rows, 3u);
  EXPECT_EQ(l.row_bytes, 4u * 5u * 2u);
  EXPECT_EQ(l.tensor_bytes, 3u * 4u * 5u * 2u);
}

TEST(ComputeLayoutTest, OneDimensionalShapeHasOneElementRows) {
  CacheLayout l;
  ASSERT_TRUE(ComputeLayout(Desc(1, DT_INT64, {10}), &l).ok());
  EXPECT_EQ(l.rows, 10u);
  EXPECT_EQ(l.row_bytes, 8u);
  EXPECT_EQ(l.tensor_bytes, 80u);
}

TEST(ComputeLayoutTest, SubByteRowsMustFillWholeBytes) {
  CacheLayout l;
  // int4 [4, 3]: a row is 12 bits.
  Result r = ComputeLayout(Desc(1, DT_INT4, {4, 3}), &l);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("whole bytes"), std::string::npos) << r.message();

  // int4 [4, 2]: one byte per row.
  r = ComputeLayout(Desc(1, DT_INT4, {4, 2}), &l);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(l.rows, 4u);
  EXPECT_EQ(l.row_bytes, 1u);
  EXPECT_EQ(l.tensor_bytes, 4u);

  // The rule is per row, not per tensor: int4 [2, 1] is a whole byte in
  // total but half a byte per row.
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT4, {2, 1}), &l).code(), LLM_PARAM_INVALID);
  // A 1-D int4 shape has one-element rows: never whole bytes.
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT4, {8}), &l).code(), LLM_PARAM_INVALID);

  // fp6: 4 elements = 24 bits = 3 bytes; 2 elements = 12 bits.
  r = ComputeLayout(Desc(1, DT_FLOAT6_E3M2, {5, 4}), &l);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(l.row_bytes, 3u);
  EXPECT_EQ(l.tensor_bytes, 15u);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_FLOAT6_E3M2, {5, 2}), &l).code(), LLM_PARAM_INVALID);

  // uint1 [3, 2, 8]: 16 bits a row.
  r = ComputeLayout(Desc(1, DT_UINT1, {3, 2, 8}), &l);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(l.row_bytes, 2u);
  EXPECT_EQ(l.tensor_bytes, 6u);
}

TEST(ComputeLayoutTest, RejectsTypesWithoutSize) {
  CacheLayout l;
  for (DataType t : {DT_STRING, DT_UNDEFINED, DT_RESOURCE, DT_STRING_REF, DT_VARIANT, DT_DUAL}) {
    Result r = ComputeLayout(Desc(1, t, {2, 2}), &l);
    EXPECT_EQ(r.code(), LLM_PARAM_INVALID) << "type " << static_cast<int>(t);
  }
  // Out-of-range raw values through the wire-facing overload.
  for (int32_t t : {-1, static_cast<int32_t>(DT_MAX), 1000, INT32_MIN}) {
    EXPECT_EQ(ComputeLayout(1, t, {2, 2}, &l).code(), LLM_PARAM_INVALID) << "type " << t;
  }
}

TEST(ComputeLayoutTest, RejectsBadShapes) {
  CacheLayout l;
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {0}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {0, 4}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {4, 0}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {-1, 4}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {4, 4, -3}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {INT64_MIN, 4}), &l).code(), LLM_PARAM_INVALID);
  Result r = ComputeLayout(Desc(1, DT_INT8, {4, 0}), &l);
  EXPECT_NE(r.message().find("shape[1]"), std::string::npos) << r.message();

  std::vector<int64_t> too_many(kMaxShapeRank + 1, 1);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, too_many), &l).code(), LLM_PARAM_INVALID);
  std::vector<int64_t> max_rank(kMaxShapeRank, 1);
  EXPECT_TRUE(ComputeLayout(Desc(1, DT_INT8, max_rank), &l).ok());
}

TEST(ComputeLayoutTest, RejectsBadTensorCounts) {
  CacheLayout l;
  Result r = ComputeLayout(Desc(0, DT_INT8, {2, 2}), &l);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("num_tensors"), std::string::npos) << r.message();
  EXPECT_EQ(ComputeLayout(Desc(kMaxTensorsPerCache + 1, DT_INT8, {2, 2}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_TRUE(ComputeLayout(Desc(kMaxTensorsPerCache, DT_INT8, {2, 2}), &l).ok());
}

TEST(ComputeLayoutTest, RejectsUnknownPlacement) {
  CacheDesc d = Desc(1, DT_INT8, {2, 2});
  d.placement = static_cast<CachePlacement>(7);
  CacheLayout l;
  EXPECT_EQ(ComputeLayout(d, &l).code(), LLM_PARAM_INVALID);
  d.placement = CachePlacement::kDevice;
  EXPECT_TRUE(ComputeLayout(d, &l).ok());
}

TEST(ComputeLayoutTest, RejectsHugeShapes) {
  CacheLayout l;
  // Products that overflow 64 bits, in the row or in the tensor.
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {1, INT64_MAX, INT64_MAX}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {INT64_MAX, INT64_MAX}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {1LL << 32, 1LL << 32}), &l).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(ComputeLayout(Desc(1, DT_COMPLEX128, {1LL << 40, 1LL << 40}), &l).code(), LLM_PARAM_INVALID);
  // Many moderate dims whose product overflows.
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {1, 1 << 20, 1 << 20, 1 << 20, 1 << 20}), &l).code(),
            LLM_PARAM_INVALID);
  // Row bytes 2^66 times 2^62 rows is exactly 2^128: a 128-bit product would
  // wrap to 0 and pass a size check done after the multiplication.
  Result r = ComputeLayout(Desc(1, DT_COMPLEX128, {1LL << 62, 1LL << 62}), &l);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID) << "rows " << l.rows << " row_bytes " << l.row_bytes;
  // Just over the 64 TiB tensor limit, and exactly at it.
  EXPECT_EQ(ComputeLayout(Desc(1, DT_INT8, {(1LL << 46) + 1}), &l).code(), LLM_PARAM_INVALID);
  r = ComputeLayout(Desc(1, DT_INT8, {1LL << 23, 1LL << 23}), &l);  // 2^46 bytes
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(l.tensor_bytes, 1ULL << 46);
  EXPECT_EQ(l.row_bytes, 1ULL << 23);
}

TEST(ComputeLayoutTest, FailureLeavesLayoutUntouched) {
  CacheLayout l;
  l.num_tensors = 9;
  l.rows = 9;
  l.row_bytes = 9;
  l.tensor_bytes = 9;
  EXPECT_FALSE(ComputeLayout(Desc(1, DT_INT4, {4, 3}), &l).ok());
  EXPECT_EQ(l.num_tensors, 9u);
  EXPECT_EQ(l.rows, 9u);
  EXPECT_EQ(l.row_bytes, 9u);
  EXPECT_EQ(l.tensor_bytes, 9u);
}

}  // namespace
}  // namespace lldd
