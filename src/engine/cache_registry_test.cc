#include "engine/cache_registry.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "memory/region_table.h"
#include "memory/user_allocations.h"

namespace lldd {
namespace {

llm_datadist::CacheDesc Bytes(int64_t n, uint32_t tensors = 1) {
  llm_datadist::CacheDesc d;
  d.num_tensors = tensors;
  d.data_type = llm_datadist::DT_UINT8;
  d.shape = {1, n};
  return d;
}

Region RegionOf(RegionTable& table, const LocalCache& cache, size_t t) {
  RegionLease lease;
  std::vector<Region> out;
  EXPECT_TRUE(table.Describe({cache.region_ids[t]}, &lease, &out).ok());
  return out.empty() ? Region{} : out[0];
}

// Registered memory the library allocated for the user (MallocMem) makes
// regions that name the allocation, so a peer on this host maps it; any
// other memory stays plain user memory.
TEST(CacheRegistryTest, RegisteredUserAllocationsAreShareable) {
  RegionTable table;
  CacheRegistry registry(table);
  void* p = nullptr;
  ASSERT_TRUE(AllocateUserMemory(false, 3 * 4096, 0, &p).ok());
  const auto base = reinterpret_cast<uint64_t>(p);
  int64_t id = 0;
  ASSERT_TRUE(registry.Register(Bytes(4096, 2), {base + 4096, base + 8192}, &id).ok());
  auto cache = registry.Find(id);
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->kind, kHostAllocated);
  EXPECT_FALSE(cache->allocated());  // the user's: UnregisterKvCache, not DeallocateCache
  for (size_t t = 0; t < 2; ++t) {
    const Region r = RegionOf(table, *cache, t);
    EXPECT_EQ(r.kind, kHostAllocated);
    ASSERT_NE(r.allocation, nullptr);
    EXPECT_EQ(r.allocation->data(), p);
    EXPECT_EQ(r.allocation_offset, 4096 * (t + 1));
  }
  // One tensor inside, one outside: plain user memory, nothing shared.
  void* other = std::aligned_alloc(4096, 4096);
  int64_t mixed = 0;
  ASSERT_TRUE(registry.Register(Bytes(4096, 2), {base, reinterpret_cast<uint64_t>(other)}, &mixed).ok());
  EXPECT_EQ(registry.Find(mixed)->kind, kHostRegistered);
  EXPECT_EQ(RegionOf(table, *registry.Find(mixed), 0).allocation, nullptr);
  // Running past the allocation's end: plain too.
  int64_t past = 0;
  ASSERT_TRUE(registry.Register(Bytes(8192), {base + 8192}, &past).ok());
  EXPECT_EQ(registry.Find(past)->kind, kHostRegistered);
  // Freed while registered: the region keeps the memory mapped.
  ASSERT_TRUE(FreeUserMemory(p).ok());
  EXPECT_EQ(RegionOf(table, *cache, 1).allocation->data(), p);
  registry.Clear();
  std::free(other);
}

}  // namespace
}  // namespace lldd
