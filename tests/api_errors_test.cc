// Every error of API.md over a real link: the status code, a reason in the
// last-error message, and the destination left untouched.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;

namespace {

constexpr uint64_t kServerId = 21;
constexpr uint64_t kClientId = 22;
constexpr int32_t kSentinel = 0x5A5A5A5A;

class ApiErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ForkedServer>(kServerId);
    remote_ = server_->RegisterInt32(4, 8, 16, 1);
    ASSERT_GT(remote_, 0);
    client_ = std::make_unique<LlmDataDist>(kClientId, LlmRole::kDecoder);
    ASSERT_EQ(client_->Initialize(ClientOptions()), LLM_SUCCESS);
    std::vector<Status> rets;
    ASSERT_EQ(client_->LinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    ASSERT_EQ(client_->AllocateCache(Int32Desc(4, 8, 16), local_), LLM_SUCCESS);
    for (uintptr_t a : local_.tensor_addrs) {
      auto* p = reinterpret_cast<int32_t*>(a);
      std::fill(p, p + 8 * 16, kSentinel);
    }
  }
  void TearDown() override {
    client_.reset();
    EXPECT_EQ(server_->Stop(), 0);
  }
  // The local cache still holds only the sentinel.
  bool Untouched() const {
    for (uintptr_t a : local_.tensor_addrs) {
      const auto* p = reinterpret_cast<const int32_t*>(a);
      for (int i = 0; i < 8 * 16; ++i)
        if (p[i] != kSentinel) return false;
    }
    return true;
  }
  // Asserts status, a message containing `needle`, and an untouched cache.
  void ExpectError(Status got, Status want, const char* needle) {
    EXPECT_EQ(got, want) << std::hex << "got 0x" << got << ": " << LlmDataDist::GetLastErrorMessage();
    std::string msg = LlmDataDist::GetLastErrorMessage();
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
    EXPECT_TRUE(Untouched());
  }
  CacheIndex Remote(uint32_t batch = 0) const { return CacheIndex{kServerId, remote_, batch}; }

  std::unique_ptr<ForkedServer> server_;
  std::unique_ptr<LlmDataDist> client_;
  int64_t remote_ = -1;
  Cache local_;
};

TEST_F(ApiErrorsTest, UnknownCluster) {
  ExpectError(client_->PullKvBlocks(CacheIndex{999, remote_}, local_, {1}, {1}), LLM_NOT_YET_LINK, "999");
  ExpectError(client_->PushKvCache(local_, CacheIndex{999, remote_}), LLM_NOT_YET_LINK, "not linked");
}

TEST_F(ApiErrorsTest, OwnClusterId) {
  ExpectError(client_->PullKvCache(CacheIndex{kClientId, local_.cache_id}, local_), LLM_PARAM_INVALID, "own");
}

TEST_F(ApiErrorsTest, UnknownLocalCache) {
  Cache bogus;
  bogus.cache_id = 4242;
  ExpectError(client_->PullKvBlocks(Remote(), bogus, {1}, {1}), LLM_KV_CACHE_NOT_EXIST, "local cache 4242");
  ExpectError(client_->PushKvBlocks(bogus, Remote(), {1}, {1}), LLM_KV_CACHE_NOT_EXIST, "4242");
}

TEST_F(ApiErrorsTest, UnknownRemoteCache) {
  ExpectError(client_->PullKvBlocks(CacheIndex{kServerId, 777}, local_, {1}, {1}), LLM_KV_CACHE_NOT_EXIST, "777");
  ExpectError(client_->PullKvCache(CacheIndex{kServerId, 777}, local_), LLM_KV_CACHE_NOT_EXIST, "777");
}

TEST_F(ApiErrorsTest, BlockOrBatchOutOfRange) {
  ExpectError(client_->PullKvBlocks(Remote(), local_, {1, 8}, {1, 2}), LLM_PARAM_INVALID, "src_blocks[1] = 8");
  ExpectError(client_->PullKvBlocks(Remote(), local_, {1, 2}, {1, 9}), LLM_PARAM_INVALID, "dst_blocks[1] = 9");
  ExpectError(client_->PullKvBlocks(Remote(), local_, {UINT64_MAX}, {1}), LLM_PARAM_INVALID, "src_blocks[0]");
  ExpectError(client_->PullKvCache(Remote(8), local_), LLM_PARAM_INVALID, "batch index 8");
  ExpectError(client_->PullKvCache(Remote(0), local_, 8), LLM_PARAM_INVALID, "batch index 8");
  ExpectError(client_->PullKvBlocks(Remote(1), local_, {1}, {1}), LLM_PARAM_INVALID, "batch_index 0");
}

TEST_F(ApiErrorsTest, BlockListsOfDifferentLengthOrEmpty) {
  ExpectError(client_->PullKvBlocks(Remote(), local_, {1, 2, 3}, {1, 2}), LLM_PARAM_INVALID, "differ in length");
  ExpectError(client_->PullKvBlocks(Remote(), local_, {}, {}), LLM_PARAM_INVALID, "empty");
  ExpectError(client_->PushKvBlocks(local_, Remote(), {1}, {1, 2}), LLM_PARAM_INVALID, "differ in length");
}

TEST_F(ApiErrorsTest, SizeTooLargeOrInvalid) {
  ExpectError(client_->PullKvCache(Remote(), local_, 0, 16 * 4 + 1), LLM_PARAM_INVALID, "exceeds the row");
  ExpectError(client_->PullKvCache(Remote(), local_, 0, 0), LLM_PARAM_INVALID, "size 0");
  ExpectError(client_->PullKvCache(Remote(), local_, 0, -2), LLM_PARAM_INVALID, "size -2");
  ExpectError(client_->PushKvCache(local_, Remote(), 0, 16), LLM_PARAM_INVALID, "only size -1");
}

TEST_F(ApiErrorsTest, LayerRanges) {
  KvCacheExtParam ext;
  ext.src_layer_range = {0, 1};
  ext.dst_layer_range = {0, 0};
  ExpectError(client_->PullKvBlocks(Remote(), local_, {1}, {1}, ext), LLM_PARAM_INVALID, "covers 2 layers");
  ext.src_layer_range = {1, 2};
  ext.dst_layer_range = {0, 1};
  ExpectError(client_->PullKvBlocks(Remote(), local_, {1}, {1}, ext), LLM_PARAM_INVALID, "src_layer_range [1, 2]");
  ext.src_layer_range = {-1, 0};
  ExpectError(client_->PullKvCache(Remote(), local_, 0, -1, ext), LLM_PARAM_INVALID, "src_layer_range");
  KvCacheExtParam per_layer;
  per_layer.tensor_num_per_layer = 3;  // 4 tensors
  ExpectError(client_->PullKvBlocks(Remote(), local_, {1}, {1}, per_layer), LLM_PARAM_INVALID, "tensor_num_per_layer 3");
  per_layer.tensor_num_per_layer = 0;
  ExpectError(client_->PullKvBlocks(Remote(), local_, {1}, {1}, per_layer), LLM_PARAM_INVALID, "tensor_num_per_layer 0");
  per_layer.tensor_num_per_layer = 8;
  ExpectError(client_->PushKvBlocks(local_, Remote(), {1}, {1}, per_layer), LLM_PARAM_INVALID, "tensor_num_per_layer 8");
}

TEST_F(ApiErrorsTest, MismatchedRowSize) {
  Cache wide;
  ASSERT_EQ(client_->AllocateCache(Int32Desc(4, 8, 32), wide), LLM_SUCCESS);
  EXPECT_EQ(client_->PullKvBlocks(Remote(), wide, {1}, {1}), LLM_PARAM_INVALID);
  EXPECT_EQ(client_->PullKvCache(Remote(), wide), LLM_PARAM_INVALID);
  // A partial size that fits both rows is fine.
  EXPECT_EQ(client_->PullKvCache(Remote(), wide, 0, 32), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
}

TEST_F(ApiErrorsTest, LinkTwiceIsAlreadyLink) {
  std::vector<Status> rets;
  EXPECT_EQ(client_->LinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets), LLM_ALREADY_LINK);
  EXPECT_EQ(rets, std::vector<Status>{LLM_ALREADY_LINK});
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("already linked"), std::string::npos);
  // The existing link still works.
  EXPECT_EQ(client_->PullKvBlocks(Remote(), local_, {1}, {1}), LLM_SUCCESS);
}

TEST_F(ApiErrorsTest, WrongClusterIdAtAddressFailsTheLink) {
  std::vector<Status> rets;
  EXPECT_EQ(client_->LinkLlmClusters({ClusterAt(555, server_->port())}, rets), LLM_LINK_FAILED);
  EXPECT_EQ(rets, std::vector<Status>{LLM_LINK_FAILED});
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("is cluster 21"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
}

TEST_F(ApiErrorsTest, PerClusterResultsInInputOrder) {
  std::vector<Status> rets;
  ClusterInfo bad_ip = ClusterAt(30, 1);
  bad_ip.remote_ip_infos[0].ip = "not-an-ip";
  ClusterInfo two_ips = ClusterAt(31, 1);
  two_ips.remote_ip_infos.push_back(two_ips.remote_ip_infos[0]);
  EXPECT_NE(client_->LinkLlmClusters({bad_ip, ClusterAt(kServerId, server_->port()), two_ips}, rets), LLM_SUCCESS);
  EXPECT_EQ(rets, (std::vector<Status>{LLM_PARAM_INVALID, LLM_ALREADY_LINK, LLM_PARAM_INVALID}));
}

}  // namespace

TEST(LinkErrors, ClosedPortFailsWithinTimeout) {
  LlmDataDist client(41, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions()), LLM_SUCCESS);
  // Find a port nobody listens on: listen, note it, stop listening.
  uint16_t port;
  {
    LlmDataDist probe(40, LlmRole::kPrompt);
    ASSERT_EQ(probe.Initialize(ClientOptions({{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}})), LLM_SUCCESS);
    port = probe.GetListenPort();
  }
  std::vector<Status> rets;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(client.LinkLlmClusters({ClusterAt(40, port)}, rets, 500), LLM_LINK_FAILED);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(rets, std::vector<Status>{LLM_LINK_FAILED});
  EXPECT_LT(ms, 500 + 1000);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("refused"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
}

TEST(LinkErrors, UnroutableAddressFailsWithinTimeout) {
  LlmDataDist client(42, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions()), LLM_SUCCESS);
  std::vector<Status> rets;
  auto start = std::chrono::steady_clock::now();
  // TEST-NET-1 (RFC 5737): never answers.
  Status st = client.LinkLlmClusters({ClusterAt(43, 9, "192.0.2.1")}, rets, 300);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(st, LLM_LINK_FAILED);
  EXPECT_EQ(rets, std::vector<Status>{LLM_LINK_FAILED});
  EXPECT_LT(ms, 300 + 1000);
}

// llm.LocalCommRes names this rank's device address: links leave from it
// (unless the call gives a local address), so a server sees connections
// from it, and an address that is not ours fails the link.
TEST(LinkErrors, LocalCommResDeviceIpIsWhereLinksLeaveFrom) {
  ForkedServer server(44);
  const auto comm_res = [](const char* ip) {
    return std::string(R"({"server_count":"1","server_list":[{"device":[{"device_id":"0","device_ip":")") + ip +
           R"("}],"server_id":"node"}],"status":"completed","version":"1.0"})";
  };
  {
    LlmDataDist client(45, LlmRole::kDecoder);
    ASSERT_EQ(client.Initialize(ClientOptions({{OPTION_LOCAL_COMM_RES, comm_res("192.0.2.7").c_str()}})), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    std::vector<Status> rets;
    EXPECT_EQ(client.LinkLlmClusters({ClusterAt(44, server.port())}, rets, 2000), LLM_LINK_FAILED);
    EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("192.0.2.7"), std::string::npos)
        << LlmDataDist::GetLastErrorMessage();
  }
  {
    LlmDataDist client(46, LlmRole::kDecoder);
    ASSERT_EQ(client.Initialize(ClientOptions({{OPTION_LOCAL_COMM_RES, comm_res("127.0.0.1").c_str()}})), LLM_SUCCESS);
    std::vector<Status> rets;
    EXPECT_EQ(client.LinkLlmClusters({ClusterAt(44, server.port())}, rets, 2000), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
  }
  EXPECT_EQ(server.Stop(), 0);
}
