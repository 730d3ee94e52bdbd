// Mutual linking: two servers link to each other at the same moment (the
// vendor's hixl_transfer_backend sample does), and both calls succeed; both
// can then pull and push, and both unlink at the same moment, also with
// success. Repeated, because the interesting orderings are races.
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;

namespace {

// The peer's id is lower in one suite and higher in the other: the lower
// cluster id's link is the one kept, so both sides of that rule run.
struct Case {
  std::string backend;
  uint64_t local_id;
  uint64_t peer_id;
};

std::string Name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.backend + (info.param.local_id < info.param.peer_id ? "_local_lower" : "_local_higher");
}

int Rounds() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 20;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return 20;
#else
  return 200;
#endif
#else
  return 200;
#endif
}

class MutualLinkTest : public ::testing::TestWithParam<Case> {};

TEST_P(MutualLinkTest, BothLinkAndUnlinkAtOnce) {
  const Case c = GetParam();
  ForkedServer peer(c.peer_id, {{OPTION_TRANSFER_BACKEND, c.backend}});
  LlmDataDist local(c.local_id, LlmRole::kDecoder);
  ASSERT_EQ(local.Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, c.backend},
                                            {OPTION_LISTEN_IP_INFO, "127.0.0.1:0"},
                                            {OPTION_SYNC_CACHE_WAIT_TIME, "5000"}})),
            LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  const std::string to_local = std::to_string(c.local_id) + " 127.0.0.1 " + std::to_string(local.GetListenPort());
  const int64_t peer_src = peer.RegisterInt32(2, 4, 16, 1);
  const int64_t peer_sink = peer.AllocateInt32(2, 4, 16, 0);
  ASSERT_GT(peer_src, 0);
  ASSERT_GT(peer_sink, 0);
  Cache src, sink;
  ASSERT_EQ(local.AllocateCache(Int32Desc(2, 4, 16), src), LLM_SUCCESS);
  ASSERT_EQ(local.AllocateCache(Int32Desc(2, 4, 16), sink), LLM_SUCCESS);
  const ClusterInfo to_peer = ClusterAt(c.peer_id, peer.port());

  for (int round = 0; round < Rounds(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string peer_says;
    std::thread other([&] { peer_says = peer.Command("link " + to_local); });
    std::vector<Status> rets;
    const Status mine = local.LinkLlmClusters({to_peer}, rets, 5000);
    const std::string why = LlmDataDist::GetLastErrorMessage();
    other.join();
    ASSERT_EQ(mine, LLM_SUCCESS) << why;
    ASSERT_EQ(peer_says, "0x0");
    ASSERT_EQ(local.GetLinkTransport(c.peer_id), c.backend);

    // Either side moves data both ways over whichever link was kept.
    const int64_t seed = 100 + round;
    ASSERT_EQ(peer.Command("fill " + std::to_string(peer_src) + " " + std::to_string(seed)), "ok");
    lldd_test::FillPattern(src.tensor_addrs, 4, 16, seed + 1000);
    for (uint32_t b = 0; b < 4; ++b)
      ASSERT_EQ(local.PullKvCache(CacheIndex{c.peer_id, peer_src, b}, sink, b), LLM_SUCCESS)
          << LlmDataDist::GetLastErrorMessage();
    for (uint32_t t = 0; t < 2; ++t)
      for (uint64_t r = 0; r < 4; ++r) ASSERT_TRUE(lldd_test::RowHolds(sink, t, r, 16, seed, t, r));
    for (uint32_t b = 1; b < 4; ++b)
      ASSERT_EQ(local.PushKvCache(src, CacheIndex{c.peer_id, peer_sink, b}, b), LLM_SUCCESS)
          << LlmDataDist::GetLastErrorMessage();
    ASSERT_EQ(peer.Command("pull " + std::to_string(c.local_id) + " " + std::to_string(src.cache_id) + " " +
                           std::to_string(peer_sink)),
              "0x0");
    ASSERT_EQ(peer.Command("check " + std::to_string(peer_sink) + " " + std::to_string(seed + 1000)), "ok");

    std::thread other_unlink([&] { peer_says = peer.Command("unlink " + to_local); });
    const Status unlinked = local.UnlinkLlmClusters({to_peer}, rets, 5000);
    const std::string unlink_why = LlmDataDist::GetLastErrorMessage();
    other_unlink.join();
    ASSERT_EQ(unlinked, LLM_SUCCESS) << unlink_why;
    ASSERT_EQ(peer_says, "0x0");
  }
  EXPECT_EQ(peer.Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(DataPaths, MutualLinkTest,
                         ::testing::Values(Case{"tcp", 31, 32}, Case{"tcp", 34, 33}, Case{"shm", 35, 36},
                                           Case{"shm", 38, 37}
#ifdef LLM_DATADIST_TEST_UCX
                                           ,
                                           Case{"ucx", 39, 40}, Case{"ucx", 42, 41}
#endif
                                           ),
                         Name);

}  // namespace
