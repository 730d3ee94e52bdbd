// PushKvCacheLayerwise across processes: a fake model releases layers one at
// a time; each layer is at the peer before the next is released; a model
// that gives up stops the task with nothing more sent; bad requests start
// no task.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;

namespace {

constexpr uint64_t kPeerId = 51;
constexpr uint64_t kLocalId = 52;
constexpr uint32_t kLayers = 4;  // 2 tensors per layer
constexpr uint64_t kRows = 4, kCols = 16;
constexpr int64_t kSeed = 77;
constexpr int64_t kSinkSeed = 5;  // what the peer's sink holds before any push

class LayerwiseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    peer_ = std::make_unique<ForkedServer>(kPeerId);
    sink_ = peer_->AllocateInt32(2 * kLayers, kRows, kCols, kSinkSeed);
    ASSERT_GT(sink_, 0);
    local_ = std::make_unique<LlmDataDist>(kLocalId, LlmRole::kPrompt);
    ASSERT_EQ(local_->Initialize(ClientOptions({{OPTION_SYNC_CACHE_WAIT_TIME, "5000"}})), LLM_SUCCESS);
    std::vector<Status> rets;
    ASSERT_EQ(local_->LinkLlmClusters({ClusterAt(kPeerId, peer_->port())}, rets), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    ASSERT_EQ(local_->AllocateCache(Int32Desc(2 * kLayers, kRows, kCols), src_), LLM_SUCCESS);
    lldd_test::FillPattern(src_.tensor_addrs, kRows, kCols, kSeed);
  }
  void TearDown() override {
    local_.reset();
    EXPECT_EQ(peer_->Stop(), 0);
  }
  // Tensor t of the peer's sink holds, in row 1, our row 1 of tensor src_t.
  bool Arrived(uint32_t t, uint32_t src_t) {
    const std::vector<int32_t> row = peer_->ReadRow(sink_, t, 1);
    if (row.size() != kCols) return false;
    for (uint64_t c = 0; c < kCols; ++c)
      if (row[c] != lldd_test::Pattern(kSeed, src_t, 1, c)) return false;
    return true;
  }
  bool Untouched(uint32_t t) {
    const std::vector<int32_t> row = peer_->ReadRow(sink_, t, 1);
    if (row.size() != kCols) return false;
    for (uint64_t c = 0; c < kCols; ++c)
      if (row[c] != lldd_test::Pattern(kSinkSeed, t, 1, c)) return false;
    return true;
  }
  LlmDataDist::LayerwiseDestination Blocks() const {
    LlmDataDist::LayerwiseDestination d;
    d.dst_cache_index = CacheIndex{kPeerId, sink_, 0};
    d.src_blocks = {1};
    d.dst_blocks = {1};
    return d;
  }

  std::unique_ptr<ForkedServer> peer_;
  std::unique_ptr<LlmDataDist> local_;
  int64_t sink_ = -1;
  Cache src_;
};

TEST_F(LayerwiseTest, EachLayerArrivesBeforeTheNextIsReleased) {
  std::atomic<int> asked{0};
  bool in_order = true;
  auto ready = [&](uint32_t layer) {
    // The fake model computes layer `layer`; every earlier layer is at the
    // peer already (and no later one).
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    for (uint32_t l = 0; l < kLayers; ++l) {
      const bool there = Arrived(2 * l, 2 * l) && Arrived(2 * l + 1, 2 * l + 1);
      if (there != (l < layer)) in_order = false;
    }
    asked.fetch_add(1);
    return true;
  };
  std::shared_ptr<LlmDataDist::LayerwiseTask> task;
  ASSERT_EQ(local_->PushKvCacheLayerwise(src_, {Blocks()}, ready, task), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  std::vector<Status> results;
  EXPECT_EQ(task->Wait(-1, &results), LLM_SUCCESS);
  EXPECT_TRUE(task->Done());
  EXPECT_EQ(results, std::vector<Status>{LLM_SUCCESS});
  EXPECT_EQ(asked.load(), static_cast<int>(kLayers));
  EXPECT_TRUE(in_order);
  for (uint32_t t = 0; t < 2 * kLayers; ++t) EXPECT_TRUE(Arrived(t, t)) << "tensor " << t;
}

TEST_F(LayerwiseTest, LayerRangesMapSourceToDestinationLayers) {
  LlmDataDist::LayerwiseDestination d = Blocks();
  d.src_layer_range = {1, 2};
  d.dst_layer_range = {2, 3};
  std::shared_ptr<LlmDataDist::LayerwiseTask> task;
  std::vector<uint32_t> asked;
  ASSERT_EQ(local_->PushKvCacheLayerwise(src_, {d}, [&](uint32_t l) { asked.push_back(l); return true; }, task),
            LLM_SUCCESS);
  EXPECT_EQ(task->Wait(), LLM_SUCCESS);
  EXPECT_EQ(asked, (std::vector<uint32_t>{1, 2}));  // layers no destination wants are not waited for
  for (uint32_t t = 0; t < 4; ++t) EXPECT_TRUE(Untouched(t)) << "tensor " << t;
  for (uint32_t t = 4; t < 8; ++t) EXPECT_TRUE(Arrived(t, t - 2)) << "tensor " << t;
}

TEST_F(LayerwiseTest, AModelThatGivesUpStopsTheTask) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto ready = [&](uint32_t layer) {
    if (layer < 2) return true;
    released.wait();
    return false;  // layer 2 never comes
  };
  std::shared_ptr<LlmDataDist::LayerwiseTask> task;
  ASSERT_EQ(local_->PushKvCacheLayerwise(src_, {Blocks(), Blocks()}, ready, task), LLM_SUCCESS);
  std::vector<Status> results;
  EXPECT_EQ(task->Wait(50, &results), LLM_TIMEOUT);  // polled while the model still computes
  EXPECT_EQ(results, (std::vector<Status>{LLM_TIMEOUT, LLM_TIMEOUT}));
  EXPECT_FALSE(task->Done());
  release.set_value();
  EXPECT_EQ(task->Wait(-1, &results), LLM_PARAM_INVALID);
  EXPECT_EQ(results, (std::vector<Status>{LLM_PARAM_INVALID, LLM_PARAM_INVALID}));
  for (uint32_t t = 0; t < 4; ++t) EXPECT_TRUE(Arrived(t, t)) << "tensor " << t;
  for (uint32_t t = 4; t < 8; ++t) EXPECT_TRUE(Untouched(t)) << "tensor " << t;
}

TEST_F(LayerwiseTest, AFailingDestinationDoesNotStopTheOthers) {
  LlmDataDist::LayerwiseDestination bad = Blocks();
  bad.dst_cache_index.cache_id = 9999;
  std::shared_ptr<LlmDataDist::LayerwiseTask> task;
  ASSERT_EQ(local_->PushKvCacheLayerwise(src_, {bad, Blocks()}, [](uint32_t) { return true; }, task), LLM_SUCCESS);
  std::vector<Status> results;
  EXPECT_EQ(task->Wait(-1, &results), LLM_KV_CACHE_NOT_EXIST);
  EXPECT_EQ(results, (std::vector<Status>{LLM_KV_CACHE_NOT_EXIST, LLM_SUCCESS}));
  for (uint32_t t = 0; t < 8; ++t) EXPECT_TRUE(Arrived(t, t)) << "tensor " << t;
}

TEST_F(LayerwiseTest, BadRequestsStartNoTask) {
  auto yes = [](uint32_t) { return true; };
  std::shared_ptr<LlmDataDist::LayerwiseTask> task;
  EXPECT_EQ(local_->PushKvCacheLayerwise(src_, {}, yes, task), LLM_PARAM_INVALID);
  EXPECT_EQ(local_->PushKvCacheLayerwise(src_, {Blocks()}, nullptr, task), LLM_PARAM_INVALID);
  EXPECT_EQ(local_->PushKvCacheLayerwise(src_, {Blocks()}, yes, task, 3), LLM_PARAM_INVALID);
  LlmDataDist::LayerwiseDestination d = Blocks();
  d.src_layer_range = {2, kLayers};
  EXPECT_EQ(local_->PushKvCacheLayerwise(src_, {d}, yes, task), LLM_PARAM_INVALID);
  d.src_layer_range = {0, 1};
  d.dst_layer_range = {0, 2};
  EXPECT_EQ(local_->PushKvCacheLayerwise(src_, {d}, yes, task), LLM_PARAM_INVALID);
  Cache unknown;
  unknown.cache_id = 4242;
  EXPECT_EQ(local_->PushKvCacheLayerwise(unknown, {Blocks()}, yes, task), LLM_KV_CACHE_NOT_EXIST);
  EXPECT_EQ(task, nullptr);
  for (uint32_t t = 0; t < 8; ++t) EXPECT_TRUE(Untouched(t)) << "tensor " << t;
}

TEST_F(LayerwiseTest, FinalizeStopsARunningTask) {
  std::atomic<bool> go{false};
  auto ready = [&](uint32_t layer) {
    while (layer == 1 && !go.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return true;
  };
  std::shared_ptr<LlmDataDist::LayerwiseTask> task;
  ASSERT_EQ(local_->PushKvCacheLayerwise(src_, {Blocks()}, ready, task), LLM_SUCCESS);
  std::thread model([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    go.store(true);
  });
  local_->Finalize();  // waits for the layer_ready call, then sends nothing more
  model.join();
  EXPECT_TRUE(task->Done());
  EXPECT_NE(task->Wait(0), LLM_SUCCESS);
  for (uint32_t t = 4; t < 8; ++t) EXPECT_TRUE(Untouched(t)) << "tensor " << t;
}

}  // namespace
