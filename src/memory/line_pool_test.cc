#include "memory/line_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace lldd {
namespace {

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kCacheLine == 0; }

TEST(LinePoolTest, BlocksAreWholeAlignedLinesOfEverySize) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{65}, size_t{192}, size_t{256},
                       size_t{257}, size_t{4096}}) {
    void* block = AllocateLines(bytes);
    ASSERT_NE(block, nullptr);
    EXPECT_TRUE(Aligned(block)) << bytes;
    // Every byte asked for, up to the end of its last line, is usable.
    const size_t lines = bytes == 0 ? 1 : (bytes + kCacheLine - 1) / kCacheLine;
    std::memset(block, 0xab, lines * kCacheLine);
    FreeLines(block, bytes);
  }
}

TEST(LinePoolTest, LiveBlocksNeverOverlapAndFreedOnesAreReused) {
  std::vector<void*> live;
  std::set<uintptr_t> seen;
  for (int i = 0; i < 3000; ++i) {
    void* block = AllocateLines(100);
    ASSERT_TRUE(seen.insert(reinterpret_cast<uintptr_t>(block)).second) << "block handed out twice";
    std::memset(block, i & 0xff, 128);
    live.push_back(block);
  }
  for (void* block : live) FreeLines(block, 100);
  // What this thread kept comes back before new memory.
  void* again = AllocateLines(128);
  if (kLinePoolKeepsBlocks) {
    EXPECT_TRUE(seen.count(reinterpret_cast<uintptr_t>(again)));
  }
  FreeLines(again, 128);
}

TEST(LinePoolTest, ABlockFreedOnAnotherThreadIsThatThreadsToReuse) {
  void* block = AllocateLines(64);
  void* reused = nullptr;
  std::thread([&] {
    FreeLines(block, 64);
    reused = AllocateLines(64);
    FreeLines(reused, 64);
  }).join();
  if (kLinePoolKeepsBlocks) {
    EXPECT_EQ(reused, block);
  }
  // The thread's pool went with it; this one still allocates.
  void* more = AllocateLines(64);
  EXPECT_TRUE(Aligned(more));
  FreeLines(more, 64);
}

TEST(LinePoolTest, SharedObjectsGoBackWhenTheLastOwnerLetsGo) {
  struct Item {
    uint64_t a[12];
  };
  auto item = std::allocate_shared<Item>(LineAllocator<Item>{});
  item->a[11] = 7;
  EXPECT_EQ(item->a[11], 7u);
  std::weak_ptr<Item> weak = item;
  item.reset();
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace lldd
