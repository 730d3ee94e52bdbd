#include "engine/handle_table.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <set>
#include <vector>

namespace lldd {
namespace {

using Table = HandleTable<std::shared_ptr<int>>;

std::vector<uint64_t> IdsInOrder(Table& t) {
  std::vector<uint64_t> ids;
  t.Scan([&](uint64_t id, std::shared_ptr<int>&) {
    ids.push_back(id);
    return true;
  });
  return ids;
}

TEST(HandleTableTest, FindsWhatWasInsertedAndNothingElse) {
  Table t;
  for (uint64_t id : {3, 4, 9, 10, 20}) t.Insert(id, std::make_shared<int>(static_cast<int>(id)));
  EXPECT_EQ(t.size(), 5u);
  for (uint64_t id : {3, 4, 9, 10, 20}) {
    ASSERT_NE(t.Find(id), nullptr) << id;
    EXPECT_EQ(**t.Find(id), static_cast<int>(id));
  }
  for (uint64_t id : {0, 1, 5, 11, 21, 1000}) EXPECT_EQ(t.Find(id), nullptr) << id;
}

TEST(HandleTableTest, ErasedIdsAreGoneWhereverTheyWere) {
  Table t;
  for (uint64_t id = 1; id <= 10; ++id) t.Insert(id, std::make_shared<int>(0));
  t.Erase(5);   // middle: a hole
  t.Erase(1);   // front
  t.Erase(10);  // back
  t.Erase(5);   // twice: nothing
  t.Erase(77);  // never there: nothing
  EXPECT_EQ(t.size(), 7u);
  EXPECT_EQ(t.Find(5), nullptr);
  EXPECT_EQ(t.Find(1), nullptr);
  EXPECT_EQ(IdsInOrder(t), (std::vector<uint64_t>{2, 3, 4, 6, 7, 8, 9}));
  // Appending after erasing goes on in order.
  t.Insert(11, std::make_shared<int>(0));
  EXPECT_EQ(IdsInOrder(t).back(), 11u);
}

TEST(HandleTableTest, ScanStopsWhenAskedAndErasesWhatItEmptied) {
  Table t;
  for (uint64_t id = 1; id <= 6; ++id) t.Insert(id, std::make_shared<int>(static_cast<int>(id)));
  std::vector<uint64_t> seen;
  t.Scan([&](uint64_t id, std::shared_ptr<int>& v) {
    if (seen.size() == 3) return false;
    seen.push_back(id);
    if (id % 2 == 0) v.reset();
    return true;
  });
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(t.size(), 5u);
  EXPECT_EQ(IdsInOrder(t), (std::vector<uint64_t>{1, 3, 4, 5, 6}));
}

TEST(HandleTableTest, MatchesASetThroughLongRandomUse) {
  // Holes build up and are compacted away; the table must agree with a
  // plain set all along.
  Table t;
  std::set<uint64_t> model;
  std::mt19937_64 rng(7);
  uint64_t next = 1;
  for (int step = 0; step < 20000; ++step) {
    const int what = static_cast<int>(rng() % 10);
    if (what < 5 || model.empty()) {
      next += 1 + rng() % 3;  // ids rise with gaps, as synchronous requests leave
      t.Insert(next, std::make_shared<int>(0));
      model.insert(next);
    } else if (what < 8) {
      auto it = model.begin();
      std::advance(it, static_cast<long>(rng() % model.size()));
      t.Erase(*it);
      model.erase(it);
    } else {
      t.Erase(*model.begin());  // the oldest, as callers mostly do
      model.erase(model.begin());
    }
    ASSERT_EQ(t.size(), model.size());
    const uint64_t probe = rng() % (next + 2);
    ASSERT_EQ(t.Find(probe) != nullptr, model.count(probe) == 1) << probe;
  }
  const std::vector<uint64_t> all(model.begin(), model.end());
  EXPECT_EQ(IdsInOrder(t), all);
}

}  // namespace
}  // namespace lldd
