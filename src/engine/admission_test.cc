#include "engine/admission.h"

#include <gtest/gtest.h>

namespace lldd {
namespace {

using Clock = AdmissionTable::Clock;

std::shared_ptr<Socket> NoSocket() { return std::make_shared<Socket>(); }

TEST(AdmissionTable, WhenFullTheOldestGoesNeverTheNewest) {
  AdmissionTable t({/*max_pending=*/3, /*per_source=*/10, /*first_frame_ms=*/1000});
  const auto now = Clock::now();
  std::unique_ptr<PendingConn> victim;
  AdmissionTable::Evicted why;
  const uint64_t a = t.Add(NoSocket(), "10.0.0.1", now, &victim, &why)->id;
  const uint64_t b = t.Add(NoSocket(), "10.0.0.2", now, &victim, &why)->id;
  t.Add(NoSocket(), "10.0.0.3", now, &victim, &why);
  EXPECT_EQ(why, AdmissionTable::Evicted::kNone);
  const uint64_t d = t.Add(NoSocket(), "10.0.0.4", now, &victim, &why)->id;
  EXPECT_EQ(why, AdmissionTable::Evicted::kFull);
  ASSERT_TRUE(victim);
  EXPECT_EQ(victim->id, a);
  EXPECT_EQ(t.size(), 3U);
  EXPECT_NE(t.Find(d), nullptr);
  // A finished entry leaves room without evicting anyone.
  EXPECT_TRUE(t.Remove(b));
  victim.reset();
  t.Add(NoSocket(), "10.0.0.5", now, &victim, &why);
  EXPECT_EQ(why, AdmissionTable::Evicted::kNone);
  EXPECT_FALSE(victim);
}

TEST(AdmissionTable, OneSourceEvictsOnlyItsOwnOldest) {
  AdmissionTable t({/*max_pending=*/100, /*per_source=*/2, /*first_frame_ms=*/1000});
  const auto now = Clock::now();
  std::unique_ptr<PendingConn> victim;
  AdmissionTable::Evicted why;
  const uint64_t other = t.Add(NoSocket(), "10.0.0.9", now, &victim, &why)->id;
  const uint64_t first = t.Add(NoSocket(), "10.0.0.1", now, &victim, &why)->id;
  t.Add(NoSocket(), "10.0.0.1", now, &victim, &why);
  t.Add(NoSocket(), "10.0.0.1", now, &victim, &why);
  EXPECT_EQ(why, AdmissionTable::Evicted::kSource);
  ASSERT_TRUE(victim);
  EXPECT_EQ(victim->id, first);
  EXPECT_EQ(t.from_source("10.0.0.1"), 2U);
  EXPECT_NE(t.Find(other), nullptr) << "another source's entry stays, though older";
}

TEST(AdmissionTable, DeadlinesExpireOldestFirst) {
  AdmissionTable t({10, 10, /*first_frame_ms=*/100});
  const auto now = Clock::now();
  std::unique_ptr<PendingConn> victim;
  AdmissionTable::Evicted why;
  const uint64_t a = t.Add(NoSocket(), "x", now, &victim, &why)->id;
  t.Add(NoSocket(), "y", now + std::chrono::milliseconds(50), &victim, &why);
  EXPECT_EQ(t.NextDeadline(), now + std::chrono::milliseconds(100));
  EXPECT_EQ(t.Expired(now + std::chrono::milliseconds(99)), nullptr);
  PendingConn* late = t.Expired(now + std::chrono::milliseconds(100));
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(late->id, a);
  t.Remove(a);
  EXPECT_EQ(t.Expired(now + std::chrono::milliseconds(120)), nullptr);
  EXPECT_EQ(t.NextDeadline(), now + std::chrono::milliseconds(150));
  EXPECT_EQ(t.Ids().size(), 1U);
}

}  // namespace
}  // namespace lldd
