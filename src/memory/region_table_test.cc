#include "memory/region_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/wait_until.h"

namespace lldd {
namespace {

using llm_datadist::LLM_KV_CACHE_NOT_EXIST;
using llm_datadist::LLM_PARAM_INVALID;
using lldd_test::WaitUntil;

TEST(RegionTableTest, AddGivesDistinctIdsNeverReused) {
  RegionTable t;
  uint8_t a[16];
  uint8_t b[16];
  uint64_t ia = t.Add(a, sizeof(a));
  uint64_t ib = t.Add(b, sizeof(b));
  EXPECT_NE(ia, 0u);
  EXPECT_NE(ia, ib);
  EXPECT_EQ(t.size(), 2u);
  t.Remove({ia});
  EXPECT_EQ(t.size(), 1u);
  uint64_t ic = t.Add(a, sizeof(a));
  EXPECT_NE(ic, ia);
  EXPECT_NE(ic, ib);
}

TEST(RegionTableTest, ResolveInsideBounds) {
  RegionTable t;
  uint8_t a[100];
  uint8_t b[50];
  uint64_t ia = t.Add(a, sizeof(a));
  uint64_t ib = t.Add(b, sizeof(b));
  RegionLease lease;
  std::vector<iovec> iovs;
  Result r = t.Resolve({{ia, 0, 100}, {ib, 10, 40}, {ia, 99, 1}, {ib, 0, 1}}, &lease, &iovs);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(iovs.size(), 4u);
  EXPECT_EQ(iovs[0].iov_base, a);
  EXPECT_EQ(iovs[0].iov_len, 100u);
  EXPECT_EQ(iovs[1].iov_base, b + 10);
  EXPECT_EQ(iovs[1].iov_len, 40u);
  EXPECT_EQ(iovs[2].iov_base, a + 99);
  EXPECT_EQ(iovs[2].iov_len, 1u);
  EXPECT_EQ(iovs[3].iov_base, b);
  EXPECT_EQ(iovs[3].iov_len, 1u);
}

TEST(RegionTableTest, ResolvePastEndRefused) {
  RegionTable t;
  uint8_t a[100];
  uint64_t ia = t.Add(a, sizeof(a));
  RegionLease lease;
  std::vector<iovec> iovs;
  Result r = t.Resolve({{ia, 0, 101}}, &lease, &iovs);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_EQ(t.Resolve({{ia, 1, 100}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(t.Resolve({{ia, 100, 1}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(t.Resolve({{ia, 101, 0}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
  // The failing segment is named.
  r = t.Resolve({{ia, 0, 10}, {ia, 95, 10}}, &lease, &iovs);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("segment 1"), std::string::npos) << r.message();
}

TEST(RegionTableTest, ResolveOffsetPlusLengthOverflowRefused) {
  RegionTable t;
  uint8_t a[100];
  uint64_t ia = t.Add(a, sizeof(a));
  RegionLease lease;
  std::vector<iovec> iovs;
  // offset + length wraps to a small number.
  EXPECT_EQ(t.Resolve({{ia, 8, UINT64_MAX - 4}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(t.Resolve({{ia, UINT64_MAX, 2}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(t.Resolve({{ia, UINT64_MAX - 10, 20}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(t.Resolve({{ia, 1ULL << 63, 1ULL << 63}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(t.Resolve({{ia, 0, UINT64_MAX}}, &lease, &iovs).code(), LLM_PARAM_INVALID);
}

TEST(RegionTableTest, ResolveUnknownRegion) {
  RegionTable t;
  uint8_t a[100];
  uint64_t ia = t.Add(a, sizeof(a));
  RegionLease lease;
  std::vector<iovec> iovs;
  EXPECT_EQ(t.Resolve({{ia + 1, 0, 1}}, &lease, &iovs).code(), LLM_KV_CACHE_NOT_EXIST);
  EXPECT_EQ(t.Resolve({{0, 0, 1}}, &lease, &iovs).code(), LLM_KV_CACHE_NOT_EXIST);
  EXPECT_EQ(t.Resolve({{ia, 0, 1}, {UINT64_MAX, 0, 1}}, &lease, &iovs).code(), LLM_KV_CACHE_NOT_EXIST);
  t.Remove({ia});
  EXPECT_EQ(t.Resolve({{ia, 0, 1}}, &lease, &iovs).code(), LLM_KV_CACHE_NOT_EXIST);
}

// A failed Resolve leases nothing, so a later Remove cannot block on it.
// (If it leaked a user count, Remove below would never return.)
TEST(RegionTableTest, FailedResolveLeasesNothing) {
  RegionTable t;
  uint8_t a[100];
  uint64_t ia = t.Add(a, sizeof(a));
  RegionLease lease;
  std::vector<iovec> iovs;
  EXPECT_FALSE(t.Resolve({{ia, 0, 10}, {ia, 0, 1000}}, &lease, &iovs).ok());
  EXPECT_FALSE(t.Resolve({{ia, 0, 10}, {ia + 7, 0, 1}}, &lease, &iovs).ok());
  t.Remove({ia});
  EXPECT_EQ(t.size(), 0u);
}

// Reusing a lease for a new Resolve/Acquire drops what it held before.
TEST(RegionTableTest, ReusedLeaseDropsPreviousHold) {
  RegionTable t;
  uint8_t a[10];
  uint8_t b[10];
  uint64_t ia = t.Add(a, sizeof(a));
  uint64_t ib = t.Add(b, sizeof(b));
  RegionLease lease;
  std::vector<iovec> iovs;
  ASSERT_TRUE(t.Resolve({{ia, 0, 10}}, &lease, &iovs).ok());
  ASSERT_TRUE(t.Acquire({ib}, &lease).ok());
  t.Remove({ia});  // would block forever if the first hold survived
  EXPECT_EQ(t.size(), 1u);
  lease.Release();
  lease.Release();  // idempotent
  t.Remove({ib});
  EXPECT_EQ(t.size(), 0u);
}

TEST(RegionTableTest, AcquireKnownAndUnknown) {
  RegionTable t;
  uint8_t a[10];
  uint64_t ia = t.Add(a, sizeof(a));
  uint64_t ib = t.Add(a, sizeof(a));
  RegionLease lease;
  EXPECT_TRUE(t.Acquire({ia, ib}, &lease).ok());
  lease.Release();
  EXPECT_EQ(t.Acquire({ia, 999}, &lease).code(), LLM_KV_CACHE_NOT_EXIST);
  t.Remove({ia});
  EXPECT_EQ(t.Acquire({ia}, &lease).code(), LLM_KV_CACHE_NOT_EXIST);
  EXPECT_EQ(t.Acquire({ib, ia}, &lease).code(), LLM_KV_CACHE_NOT_EXIST);
  // The failed Acquire did not keep ib.
  t.Remove({ib});
  EXPECT_EQ(t.size(), 0u);
}

TEST(RegionTableTest, RemoveUnknownIdsReturnsAtOnce) {
  RegionTable t;
  uint8_t a[10];
  uint64_t ia = t.Add(a, sizeof(a));
  t.Remove({});
  t.Remove({ia + 100});
  EXPECT_EQ(t.size(), 1u);
}

// The lease is held by another thread. That thread lets go only after it
// has seen the region disappear from the table (Remove has started), and
// records that it did so before releasing. Remove must not return before
// that record exists.
void ExpectRemoveWaitsForLease(bool use_resolve) {
  RegionTable t;
  std::vector<uint8_t> mem(4096);
  uint64_t id = t.Add(mem.data(), mem.size());
  uint64_t other = t.Add(mem.data(), 16);

  // Gtest assertions stay on the test's thread: the holder only records.
  std::atomic<bool> leased{false};
  std::atomic<bool> lease_failed{false};
  std::atomic<bool> saw_removal{false};
  std::atomic<bool> released{false};
  std::atomic<int> resolve_after_remove{-1};
  std::thread holder([&] {
    RegionLease lease;
    std::vector<iovec> iovs;
    Result r = use_resolve ? t.Resolve({{id, 100, 200}}, &lease, &iovs) : t.Acquire({id}, &lease);
    if (!r.ok()) {
      lease_failed = true;
      return;
    }
    leased = true;
    // Remove has taken the region out. If it never does, let go anyway:
    // the test then fails instead of Remove waiting forever.
    saw_removal = WaitUntil([&] { return t.size() == 1; });
    // While removal is pending, the region can no longer be reached.
    RegionLease second;
    resolve_after_remove = static_cast<int>(t.Resolve({{id, 0, 1}}, &second, &iovs).code() ==
                                            LLM_KV_CACHE_NOT_EXIST);
    released = true;
    lease.Release();
  });
  if (!WaitUntil([&] { return leased || lease_failed; }) || lease_failed) {
    holder.join();
    FAIL() << "the holder thread could not take its lease";
  }
  t.Remove({id});
  EXPECT_TRUE(released.load()) << "Remove returned while a lease was still held";
  holder.join();
  EXPECT_TRUE(saw_removal.load()) << "Remove did not take the region out of the table";
  EXPECT_EQ(resolve_after_remove.load(), 1);
  EXPECT_EQ(t.size(), 1u);
  RegionLease lease;
  EXPECT_TRUE(t.Acquire({other}, &lease).ok());
}

TEST(RegionTableTest, RemoveWaitsForAcquiredLease) { ExpectRemoveWaitsForLease(false); }
TEST(RegionTableTest, RemoveWaitsForResolvedLease) { ExpectRemoveWaitsForLease(true); }

// Two leases on two threads: Remove returns only after both are gone.
TEST(RegionTableTest, RemoveWaitsForEveryLease) {
  RegionTable t;
  uint8_t a[64];
  uint8_t b[64];
  uint64_t ia = t.Add(a, sizeof(a));
  uint64_t ib = t.Add(b, sizeof(b));
  std::atomic<int> leased{0};
  std::atomic<int> lease_failures{0};
  std::atomic<int> saw_removal{0};
  std::atomic<int> released{0};
  auto hold = [&](uint64_t id) {
    RegionLease lease;
    if (!t.Acquire({id}, &lease).ok()) {
      ++lease_failures;
      return;
    }
    ++leased;
    // Bounded, as above: a Remove that never empties the table fails the
    // test rather than hanging it.
    saw_removal += WaitUntil([&] { return t.size() == 0; });
    ++released;
    lease.Release();
  };
  std::thread h1(hold, ia);
  std::thread h2(hold, ib);
  if (!WaitUntil([&] { return leased + lease_failures == 2; }) || lease_failures != 0) {
    t.Remove({ia, ib});  // lets a holder that did take its lease go
    h1.join();
    h2.join();
    FAIL() << "the holder threads could not take their leases";
  }
  t.Remove({ia, ib});
  EXPECT_EQ(released.load(), 2);
  h1.join();
  h2.join();
  EXPECT_EQ(saw_removal.load(), 2);
}

// A peer's lease (one with a canceller) that outlives the grace period is
// cancelled, and Remove returns once its holder let go: removal is bounded
// whatever the peer does. The holder waits for the cancellation (bounded,
// so the test fails rather than hangs if none comes).
TEST(RegionTableTest, RemoveCancelsAPeersLeaseAfterTheGrace) {
  RegionTable t;
  t.set_removal_grace_ms(20);
  std::vector<uint8_t> mem(64);
  uint64_t id = t.Add(mem.data(), mem.size());
  std::atomic<int> cancels{0};
  std::atomic<bool> leased{false};
  std::atomic<bool> released{false};
  std::thread holder([&] {
    RegionLease lease([&] { ++cancels; });
    std::vector<iovec> iovs;
    if (!t.Resolve({{id, 0, 8}}, &lease, &iovs).ok()) return;
    leased = true;
    WaitUntil([&] { return cancels > 0; });
    released = true;
    lease.Release();
  });
  ASSERT_TRUE(WaitUntil([&] { return leased.load(); }));
  EXPECT_EQ(t.Remove({id}), 1u);
  EXPECT_TRUE(released.load());
  holder.join();
  EXPECT_EQ(cancels.load(), 1);
  EXPECT_EQ(t.size(), 0u);
}

// A lease let go within the grace period is never cancelled; nor is a
// lease of a region that is not being removed.
TEST(RegionTableTest, RemoveCancelsNothingReleasedInTime) {
  RegionTable t;
  t.set_removal_grace_ms(60000);
  uint8_t a[16];
  uint8_t b[16];
  uint64_t ia = t.Add(a, sizeof(a));
  uint64_t ib = t.Add(b, sizeof(b));
  std::atomic<int> cancels{0};
  RegionLease other([&] { ++cancels; });
  std::vector<iovec> iovs;
  ASSERT_TRUE(t.Resolve({{ib, 0, 16}}, &other, &iovs).ok());
  std::atomic<bool> leased{false};
  std::thread holder([&] {
    RegionLease lease([&] { ++cancels; });
    std::vector<iovec> v;
    if (!t.Resolve({{ia, 0, 16}}, &lease, &v).ok()) return;
    leased = true;
    WaitUntil([&] { return t.size() == 1; });  // Remove has begun
  });
  ASSERT_TRUE(WaitUntil([&] { return leased.load(); }));
  EXPECT_EQ(t.Remove({ia}), 0u);
  holder.join();
  EXPECT_EQ(cancels.load(), 0);
}

// A lease going out of scope releases its regions.
TEST(RegionTableTest, LeaseDestructorReleases) {
  RegionTable t;
  uint8_t a[8];
  uint64_t ia = t.Add(a, sizeof(a));
  {
    RegionLease lease;
    ASSERT_TRUE(t.Acquire({ia, ia}, &lease).ok());  // the same id twice
  }
  t.Remove({ia});
  EXPECT_EQ(t.size(), 0u);
}

}  // namespace
}  // namespace lldd
