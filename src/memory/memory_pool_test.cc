#include "memory/memory_pool.h"

#include <gtest/gtest.h>

#include <vector>

#include "llm_datadist/llm_types.h"

namespace lldd {
namespace {

class HeapAllocation : public Allocation {
 public:
  explicit HeapAllocation(uint64_t n) : bytes_(n, 0xAB) {}
  uint8_t* data() const override { return const_cast<uint8_t*>(bytes_.data()); }
  uint64_t size() const override { return bytes_.size(); }
  MemoryKind kind() const override { return kHostAllocated; }

 private:
  std::vector<uint8_t> bytes_;
};

std::shared_ptr<MemoryPool> MakePool(uint64_t size, uint32_t page_shift = 10) {
  return std::make_shared<MemoryPool>(std::make_shared<HeapAllocation>(size), MemoryPoolConfig{size, page_shift});
}

TEST(MemoryPoolTest, ParsesTheVendorsJson) {
  MemoryPoolConfig c;
  ASSERT_TRUE(ParseMemoryPoolConfig("k", R"({"memory_size": 4096})", &c).ok());
  EXPECT_EQ(c.memory_size, 4096u);
  EXPECT_EQ(c.page_shift, 16u);
  ASSERT_TRUE(ParseMemoryPoolConfig("k", R"({"memory_size": 4096, "page_shift": 12})", &c).ok());
  EXPECT_EQ(c.page_shift, 12u);
  for (const char* bad : {"", "[]", R"({"page_shift": 12})", R"({"memory_size": 0})", R"({"memory_size": -1})",
                          R"({"memory_size": 4096, "page_shift": 9})", R"({"memory_size": 4096, "page_shift": 31})"}) {
    Result r = ParseMemoryPoolConfig("llm.MemPoolConfig", bad, &c);
    EXPECT_EQ(r.code(), llm_datadist::LLM_PARAM_INVALID) << bad;
    EXPECT_NE(r.message().find("llm.MemPoolConfig"), std::string::npos) << r.message();
  }
}

TEST(MemoryPoolTest, CarvesPageRoundedZeroedChunksUntilFull) {
  auto pool = MakePool(4 * 1024);
  std::shared_ptr<Allocation> a, b, c;
  ASSERT_TRUE(pool->Allocate(1, false, &a).ok());
  EXPECT_EQ(a->size(), 1024u);
  EXPECT_EQ(a->data()[0], 0);  // the backing was 0xAB
  ASSERT_TRUE(pool->Allocate(2048, false, &b).ok());
  EXPECT_EQ(b->data(), a->data() + 1024);
  EXPECT_EQ(pool->free_bytes(), 1024u);
  Result r = pool->Allocate(1025, false, &c);
  EXPECT_EQ(r.code(), llm_datadist::LLM_OUT_OF_MEMORY);
  EXPECT_NE(r.message().find("exhausted"), std::string::npos) << r.message();
  EXPECT_EQ(pool->Allocate(8192, true, &c).code(), llm_datadist::LLM_DEVICE_OUT_OF_MEMORY);
  EXPECT_EQ(pool->Allocate(0, false, &c).code(), llm_datadist::LLM_OUT_OF_MEMORY);
}

TEST(MemoryPoolTest, FreedChunksCoalesceAndServeAgain) {
  auto pool = MakePool(4 * 1024);
  std::vector<std::shared_ptr<Allocation>> chunks(4);
  for (auto& c : chunks) ASSERT_TRUE(pool->Allocate(1024, false, &c).ok());
  EXPECT_EQ(pool->free_bytes(), 0u);
  // Freed out of order: 1, 3, then 2 joins both neighbours, then 0.
  chunks[1].reset();
  chunks[3].reset();
  std::shared_ptr<Allocation> big;
  EXPECT_FALSE(pool->Allocate(2048, false, &big).ok());  // 2 KiB free, not contiguous
  chunks[2].reset();
  ASSERT_TRUE(pool->Allocate(3072, false, &big).ok());
  big.reset();
  chunks[0].reset();
  EXPECT_EQ(pool->free_bytes(), 4096u);
  ASSERT_TRUE(pool->Allocate(4096, false, &big).ok());
}

TEST(MemoryPoolTest, ChunksShareTheBackingAtTheirOffset) {
  auto pool = MakePool(4 * 1024);
  std::shared_ptr<Allocation> a, b;
  ASSERT_TRUE(pool->Allocate(1024, false, &a).ok());
  ASSERT_TRUE(pool->Allocate(1024, false, &b).ok());
  uint64_t offset = 99;
  auto backing = SharedBacking(b, &offset);
  EXPECT_EQ(offset, 1024u);
  EXPECT_EQ(backing->data() + offset, b->data());
  EXPECT_EQ(a->id(), b->id());
  auto plain = std::make_shared<HeapAllocation>(16);
  EXPECT_EQ(SharedBacking(plain, &offset), plain);
  EXPECT_EQ(offset, 0u);
}

TEST(MemoryPoolTest, AChunkKeepsItsPoolAlive) {
  std::shared_ptr<Allocation> a;
  {
    auto pool = MakePool(2048);
    ASSERT_TRUE(pool->Allocate(1024, false, &a).ok());
  }
  a->data()[0] = 1;  // still valid memory
  a.reset();
}

}  // namespace
}  // namespace lldd
