#include "engine/ops_job.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace lldd {
namespace {

using Groups = OpsJob::Groups;

// A runner that records the groups it was given.
struct Recorder {
  std::vector<Groups> runs;
  std::shared_ptr<const OpsJob::Runner> runner() {
    return std::make_shared<const OpsJob::Runner>([this](const Groups& g, Deadline) {
      runs.push_back(g);
      return Result::Ok();
    });
  }
};

uint8_t g_local[4096];

OpsJob::OneOp One(uint64_t remote_region, uint64_t offset, uint64_t length, uint32_t local_kind = 0,
                  uint32_t remote_kind = 0) {
  return {7, local_kind, remote_kind, 11, IoOp{g_local + offset, remote_region, offset, length}};
}

Engine::OpsTransfer Listed(std::vector<IoOp> ops, uint32_t local_kind = 0, uint32_t remote_kind = 0) {
  Engine::OpsTransfer t;
  t.remote_cluster_id = 7;
  t.push = true;
  t.local_kind = local_kind;
  t.remote_kind = remote_kind;
  for (const IoOp& op : ops) {
    t.local_region_ids.push_back(12);
    t.remote_region_ids.push_back(op.region_id);
  }
  t.ops = std::move(ops);
  return t;
}

TEST(OpsJobTest, AOneOpJobRunsAsOneGroupOfItsOp) {
  Recorder rec;
  const int key = 0;
  OpsJob job(&key, true, One(5, 64, 100, 1, 2), rec.runner());
  EXPECT_EQ(job.ops(), 1u);
  EXPECT_EQ(job.bytes(), 100u);
  ASSERT_TRUE(job.Run(Deadline::Never()).ok());
  ASSERT_EQ(rec.runs.size(), 1u);
  ASSERT_EQ(rec.runs[0].size(), 1u);
  const Engine::OpsTransfer& t = rec.runs[0][0];
  EXPECT_EQ(t.remote_cluster_id, 7u);
  EXPECT_TRUE(t.push);
  EXPECT_EQ(t.local_kind, 1u);
  EXPECT_EQ(t.remote_kind, 2u);
  EXPECT_EQ(t.local_region_ids, std::vector<uint64_t>{11});
  EXPECT_EQ(t.remote_region_ids, std::vector<uint64_t>{5});
  ASSERT_EQ(t.ops.size(), 1u);
  EXPECT_EQ(t.ops[0].local, g_local + 64);
  EXPECT_EQ(t.ops[0].region_id, 5u);
  EXPECT_EQ(t.ops[0].remote_offset, 64u);
  EXPECT_EQ(t.ops[0].length, 100u);
  // Run again: the lists it was given are not left over from the first run.
  ASSERT_TRUE(job.Run(Deadline::Never()).ok());
  EXPECT_EQ(rec.runs[1][0].ops.size(), 1u);
}

TEST(OpsJobTest, OneOpAndListedJobsJoinInTheirOrderWithEachRegionLeasedOnce) {
  Recorder rec;
  const int key = 0;
  auto runner = rec.runner();
  OpsJob a(&key, true, One(5, 0, 10), runner);
  Groups listed;
  listed.push_back(Listed({{g_local, 6, 0, 20}, {g_local, 5, 100, 30}}));
  OpsJob b(&key, true, std::move(listed), runner);
  OpsJob c(&key, true, One(5, 200, 40), runner);
  ASSERT_TRUE(a.CanJoin(b));
  ASSERT_TRUE(a.CanJoin(c));
  ASSERT_TRUE(b.CanJoin(a));
  auto joined = a.Join({&a, &b, &c});
  EXPECT_EQ(joined->ops(), 4u);
  EXPECT_EQ(joined->bytes(), 100u);
  ASSERT_TRUE(joined->Run(Deadline::Never()).ok());
  ASSERT_EQ(rec.runs.size(), 1u);
  ASSERT_EQ(rec.runs[0].size(), 1u);
  const Engine::OpsTransfer& t = rec.runs[0][0];
  std::vector<uint64_t> lengths;
  for (const IoOp& op : t.ops) lengths.push_back(op.length);
  EXPECT_EQ(lengths, (std::vector<uint64_t>{10, 20, 30, 40}));
  EXPECT_EQ(t.local_region_ids, (std::vector<uint64_t>{11, 12}));
  EXPECT_EQ(t.remote_region_ids, (std::vector<uint64_t>{5, 6}));
}

TEST(OpsJobTest, JobsJoinOnlyWithTheSamePeerDirectionAndMemoryKinds) {
  Recorder rec;
  const int key = 0;
  const int other_key = 0;
  auto runner = rec.runner();
  OpsJob base(&key, true, One(5, 0, 10, 1, 2), runner);
  EXPECT_TRUE(base.CanJoin(OpsJob(&key, true, One(6, 0, 10, 1, 2), runner)));
  EXPECT_FALSE(base.CanJoin(OpsJob(&other_key, true, One(5, 0, 10, 1, 2), runner)));
  EXPECT_FALSE(base.CanJoin(OpsJob(&key, false, One(5, 0, 10, 1, 2), runner)));
  EXPECT_FALSE(base.CanJoin(OpsJob(&key, true, One(5, 0, 10, 0, 2), runner)));
  EXPECT_FALSE(base.CanJoin(OpsJob(&key, true, One(5, 0, 10, 1, 0), runner)));
  Groups same;
  same.push_back(Listed({{g_local, 5, 0, 10}}, 1, 2));
  EXPECT_TRUE(base.CanJoin(OpsJob(&key, true, std::move(same), runner)));
  Groups two;
  two.push_back(Listed({{g_local, 5, 0, 10}}, 1, 2));
  two.push_back(Listed({{g_local, 5, 0, 10}}, 0, 0));
  EXPECT_FALSE(base.CanJoin(OpsJob(&key, true, std::move(two), runner)));
}

}  // namespace
}  // namespace lldd
