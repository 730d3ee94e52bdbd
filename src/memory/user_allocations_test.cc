#include "memory/user_allocations.h"

#include <gtest/gtest.h>

#include <cstring>

#include "memory/allocator.h"

namespace lldd {
namespace {

using llm_datadist::LLM_PARAM_INVALID;

TEST(UserAllocationsTest, FindsOnlyRangesWhollyInside) {
  void* p = nullptr;
  ASSERT_TRUE(AllocateUserMemory(false, 10000, 0, &p).ok());  // rounded up to 12288
  const auto base = reinterpret_cast<uint64_t>(p);
  EXPECT_EQ(base % 4096, 0u);
  EXPECT_EQ(static_cast<uint8_t*>(p)[9999], 0);  // zero-filled
  auto at = UserAllocationAt(p);
  ASSERT_NE(at, nullptr);
  EXPECT_EQ(at->kind(), kHostAllocated);
  EXPECT_GE(at->shareable_fd(), 0);
  EXPECT_EQ(at->size(), 12288u);
  EXPECT_EQ(UserAllocationAt(static_cast<uint8_t*>(p) + 1), nullptr);  // the start only
  uint64_t off = 99;
  EXPECT_EQ(FindUserAllocation(base, 12288, &off), at);
  EXPECT_EQ(off, 0u);
  EXPECT_EQ(FindUserAllocation(base + 4096, 100, &off), at);
  EXPECT_EQ(off, 4096u);
  EXPECT_EQ(FindUserAllocation(base + 100, 12288, &off), nullptr);  // runs past the end
  EXPECT_EQ(FindUserAllocation(base - 1, 2, &off), nullptr);         // starts before
  EXPECT_EQ(FindUserAllocation(base + 12288, 1, &off), nullptr);
  ASSERT_TRUE(FreeUserMemory(p).ok());
  EXPECT_EQ(FindUserAllocation(base, 1, &off), nullptr);
  EXPECT_EQ(UserAllocationAt(p), nullptr);
  // What a registration held stays mapped after the free.
  EXPECT_EQ(at->data(), p);
  std::memset(at->data(), 7, 12288);
}

TEST(UserAllocationsTest, RefusesBadArguments) {
  void* p = nullptr;
  EXPECT_EQ(AllocateUserMemory(false, 0, 0, &p).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(AllocateUserMemory(false, 4096, 0, nullptr).code(), LLM_PARAM_INVALID);
  if (!GetDeviceMemoryProvider()) {
    Result r = AllocateUserMemory(true, 4096, 0, &p);
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.message().find("no usable GPU"), std::string::npos) << r.message();
  }
  EXPECT_EQ(FreeUserMemory(nullptr).code(), LLM_PARAM_INVALID);
  int local = 0;
  EXPECT_EQ(FreeUserMemory(&local).code(), LLM_PARAM_INVALID);
  ASSERT_TRUE(AllocateUserMemory(false, 1, 0, &p).ok());
  EXPECT_EQ(FreeUserMemory(static_cast<uint8_t*>(p) + 8).code(), LLM_PARAM_INVALID);  // inside, not the start
  EXPECT_TRUE(FreeUserMemory(p).ok());
  EXPECT_EQ(FreeUserMemory(p).code(), LLM_PARAM_INVALID);  // twice
}

}  // namespace
}  // namespace lldd
