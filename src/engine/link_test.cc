#include "engine/link.h"

#include <gtest/gtest.h>

namespace lldd {
namespace {

// Each request of a peer's transport is served on a thread of its own
// (engine_control.cc): a link admits only so many at once, and a slot
// freed is a slot to use again.
TEST(LinkTest, PeerCallsInFlightAreBoundedPerLink) {
  Link link(7, false, 1, 2, nullptr, nullptr);
  Link other(8, false, 3, 4, nullptr, nullptr);
  for (int i = 0; i < Link::kMaxPeerCallsPerLink; ++i) ASSERT_TRUE(link.TryBeginPeerCall()) << i;
  EXPECT_FALSE(link.TryBeginPeerCall());
  EXPECT_FALSE(link.TryBeginPeerCall());  // a refusal takes no slot
  EXPECT_TRUE(other.TryBeginPeerCall());  // per link
  link.EndPeerCall();
  EXPECT_TRUE(link.TryBeginPeerCall());
  EXPECT_FALSE(link.TryBeginPeerCall());
  for (int i = 0; i < Link::kMaxPeerCallsPerLink; ++i) link.EndPeerCall();
  other.EndPeerCall();
}

}  // namespace
}  // namespace lldd
