#include "common/split_evenly.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace lldd {
namespace {

// A range with two addresses that must move together (like IoOp or CopyTask).
struct R {
  uint64_t a = 0;
  uint64_t b = 0;
  uint64_t length = 0;
};

auto Advance = [](R& r, uint64_t n) {
  r.a += n;
  r.b += n;
};

std::vector<std::vector<R>> Split(const std::vector<R>& in, size_t parts) { return SplitEvenly(in, parts, Advance); }

uint64_t Bytes(const std::vector<R>& rs) {
  uint64_t n = 0;
  for (const R& r : rs) n += r.length;
  return n;
}

// The pieces, read in order, are exactly the non-empty input ranges cut at
// some points: every byte once, in order, both addresses kept in step.
void ExpectSameBytesInOrder(const std::vector<R>& in, const std::vector<std::vector<R>>& parts) {
  std::vector<R> pieces;
  for (const auto& p : parts)
    for (const R& r : p) pieces.push_back(r);
  size_t k = 0;
  for (const R& r : in) {
    uint64_t done = 0;
    while (done < r.length) {
      ASSERT_LT(k, pieces.size()) << "bytes missing";
      const R& p = pieces[k++];
      ASSERT_GT(p.length, 0u) << "empty piece";
      EXPECT_EQ(p.a, r.a + done);
      EXPECT_EQ(p.b, r.b + done);
      ASSERT_LE(p.length, r.length - done) << "piece runs past its range";
      done += p.length;
    }
  }
  EXPECT_EQ(k, pieces.size()) << "extra pieces";
}

// About equal: every part but the last holds ceil(total/parts) bytes, the
// last no more; no part is empty; never more parts than asked.
void ExpectEven(const std::vector<R>& in, size_t parts, const std::vector<std::vector<R>>& out) {
  const uint64_t total = Bytes(in);
  const size_t n = std::max<size_t>(parts, 1);
  EXPECT_LE(out.size(), n);
  if (total == 0) {
    EXPECT_TRUE(out.empty());
    return;
  }
  const uint64_t per = total / n + (total % n != 0);
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_FALSE(out[i].empty()) << "part " << i;
    if (i + 1 < out.size()) {
      EXPECT_EQ(Bytes(out[i]), per) << "part " << i;
    } else {
      EXPECT_LE(Bytes(out[i]), per);
      EXPECT_GT(Bytes(out[i]), 0u);
    }
  }
  // As many parts as the bytes allow.
  EXPECT_EQ(out.size(), static_cast<size_t>(std::min<uint64_t>(n, total / per + (total % per != 0))));
}

TEST(SplitEvenlyTest, EmptyInputGivesNoParts) {
  EXPECT_TRUE(Split({}, 4).empty());
  EXPECT_TRUE(Split({}, 0).empty());
  EXPECT_TRUE(Split({R{1, 2, 0}, R{3, 4, 0}}, 3).empty());
}

TEST(SplitEvenlyTest, ZeroPartsMeansOne) {
  std::vector<R> in{{100, 200, 10}, {300, 400, 5}};
  auto out = Split(in, 0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Bytes(out[0]), 15u);
  ExpectSameBytesInOrder(in, out);
}

TEST(SplitEvenlyTest, OnePartIsTheInputWithoutEmptyRanges) {
  std::vector<R> in{{0, 0, 7}, {50, 60, 0}, {100, 1000, 9}};
  auto out = Split(in, 1);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].size(), 2u);
  ExpectSameBytesInOrder(in, out);
}

TEST(SplitEvenlyTest, OneRangeCutIntoEqualParts) {
  std::vector<R> in{{1000, 5000, 12}};
  auto out = Split(in, 3);
  ASSERT_EQ(out.size(), 3u);
  for (const auto& p : out) {
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].length, 4u);
  }
  EXPECT_EQ(out[1][0].a, 1004u);
  EXPECT_EQ(out[2][0].b, 5008u);
  ExpectSameBytesInOrder(in, out);
}

TEST(SplitEvenlyTest, UnevenTotalPutsTheRemainderLast) {
  std::vector<R> in{{0, 0, 10}};
  auto out = Split(in, 4);  // per = 3: 3 3 3 1
  ExpectEven(in, 4, out);
  ExpectSameBytesInOrder(in, out);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(Bytes(out[3]), 1u);
}

TEST(SplitEvenlyTest, MorePartsThanBytes) {
  std::vector<R> in{{10, 20, 1}, {30, 40, 2}};
  auto out = Split(in, 10);
  ASSERT_EQ(out.size(), 3u);  // one byte each; empty trailing parts dropped
  for (const auto& p : out) EXPECT_EQ(Bytes(p), 1u);
  ExpectSameBytesInOrder(in, out);
}

TEST(SplitEvenlyTest, FewerBytesThanPartsCanLeaveFewerParts) {
  // 5 bytes in 4 parts: per = 2, so only 3 parts carry bytes.
  std::vector<R> in{{0, 0, 5}};
  auto out = Split(in, 4);
  ExpectEven(in, 4, out);
  ExpectSameBytesInOrder(in, out);
  EXPECT_EQ(out.size(), 3u);
}

TEST(SplitEvenlyTest, RangesSpanningPartBoundaries) {
  std::vector<R> in{{0, 1000, 3}, {100, 2000, 8}, {200, 3000, 1}, {300, 4000, 12}};
  for (size_t parts = 1; parts <= 30; ++parts) {
    SCOPED_TRACE(parts);
    auto out = Split(in, parts);
    ExpectEven(in, parts, out);
    ExpectSameBytesInOrder(in, out);
  }
}

TEST(SplitEvenlyTest, HugeRanges) {
  // Lengths far above any real transfer: no overflow in the arithmetic.
  const uint64_t big = 1ULL << 62;
  std::vector<R> in{{0, 1ULL << 63, big}, {big, 0, big - 3}, {0, 0, 7}};
  for (size_t parts : {1, 2, 3, 7, 64}) {
    SCOPED_TRACE(parts);
    auto out = Split(in, parts);
    ExpectEven(in, parts, out);
    ExpectSameBytesInOrder(in, out);
  }
}

TEST(SplitEvenlyTest, TotalNearTheTopOfUint64) {
  // total + parts - 1 must not wrap: 2^64 - 2 bytes in 3 parts.
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  std::vector<R> in{{0, 0, max / 2}, {0, 0, max / 2}};
  auto out = Split(in, 3);
  ExpectEven(in, 3, out);
  ExpectSameBytesInOrder(in, out);
}

TEST(SplitEvenlyTest, RandomListsConserveBytesAndOrder) {
  std::mt19937_64 rng(20261127);
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<R> in(rng() % 12);
    uint64_t a = 0;
    for (R& r : in) {
      r.length = rng() % 4 == 0 ? 0 : rng() % (rng() % 2 ? 17 : 100000);
      r.a = a;
      r.b = rng() % (1ULL << 40);
      a += r.length + rng() % 5;
    }
    const size_t parts = rng() % 20;
    SCOPED_TRACE(::testing::Message() << "iteration " << iter << " parts " << parts);
    auto out = Split(in, parts);
    ExpectEven(in, parts, out);
    ExpectSameBytesInOrder(in, out);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace lldd
