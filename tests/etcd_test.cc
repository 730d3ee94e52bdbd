// Discovery through a real etcd (label `etcd`): one etcd per suite on
// loopback, prefill servers in forked processes, this process as decode.
// Skips, saying why, where no etcd binary is installed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "directory/base64.h"
#include "directory/directory.h"
#include "directory/etcd_client.h"
#include "llm_datadist/llm_datadist.h"
#include "tests/etcd_server.h"
#include "tests/wait_until.h"
#include "test_peer.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;

namespace {

constexpr uint64_t kRows = 4;
constexpr uint64_t kCols = 64;
constexpr int64_t kTtlS = 2;  // etcd's shortest lease

class EtcdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (lldd_test::EtcdServer::FindBinary().empty()) return;
    etcd_ = new lldd_test::EtcdServer();
    std::string why;
    if (!etcd_->Start(&why)) start_error_ = new std::string(why);
  }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override {
    if (etcd_ == nullptr) GTEST_SKIP() << "no etcd binary (Debian: apt-get install etcd-server); etcd tests skipped";
    ASSERT_EQ(start_error_, nullptr) << "etcd did not start: " << *start_error_;
  }

  // Options that publish in this suite's etcd, under a prefix of this test.
  static std::map<std::string, std::string> DirectoryOptions() {
    return {{LlmDataDist::OPTION_DIRECTORY, etcd_->url()},
            {LlmDataDist::OPTION_DIRECTORY_PREFIX, Prefix()},
            {LlmDataDist::OPTION_DIRECTORY_TTL, std::to_string(kTtlS)}};
  }
  static std::string Prefix() {
    return std::string("/t/") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }
  std::unique_ptr<LlmDataDist> Client(uint64_t id, std::map<std::string, std::string> extra = {}) {
    auto options = DirectoryOptions();
    options.insert(extra.begin(), extra.end());
    auto dd = std::make_unique<LlmDataDist>(id, LlmRole::kDecoder);
    EXPECT_EQ(dd->Initialize(ClientOptions(options)), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
    return dd;
  }
  static bool Listed(uint64_t cluster_id) {
    lldd::EtcdClient client({etcd_->endpoint()});
    bool found = false;
    lldd::EtcdKeyValue kv;
    return client.Get(Prefix() + std::to_string(cluster_id), lldd::Deadline::AfterMillis(2000), &found, &kv).ok() &&
           found;
  }
  static Status LinkById(LlmDataDist& dd, uint64_t cluster_id) {
    ClusterInfo c;
    c.remote_cluster_id = cluster_id;
    std::vector<Status> rets;
    return dd.LinkLlmClusters({c}, rets, 3000);
  }
  // Pulls every row of the server's cache and checks each byte.
  static void PullAndCheck(LlmDataDist& dd, uint64_t server_id, int64_t remote_id, int64_t seed) {
    Cache local;
    ASSERT_EQ(dd.AllocateCache(Int32Desc(2, kRows, kCols), local), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
    for (uint32_t row = 0; row < kRows; ++row) {
      ASSERT_EQ(dd.PullKvCache(CacheIndex{server_id, remote_id, row}, local, row), LLM_SUCCESS)
          << LlmDataDist::GetLastErrorMessage();
      for (uint32_t t = 0; t < 2; ++t) EXPECT_TRUE(lldd_test::RowHolds(local, t, row, kCols, seed, t, row));
    }
    EXPECT_EQ(dd.DeallocateCache(local.cache_id), LLM_SUCCESS);
  }

  static lldd_test::EtcdServer* etcd_;
  static std::string* start_error_;
};

lldd_test::EtcdServer* EtcdTest::etcd_ = nullptr;
std::string* EtcdTest::start_error_ = nullptr;

TEST(DirectoryBase64, RoundTripsAndRejectsJunk) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", "/llm_datadist/42", std::string("\0\xff\x10", 3)}) {
    std::string back;
    ASSERT_TRUE(lldd::Base64Decode(lldd::Base64Encode(s), &back)) << s;
    EXPECT_EQ(back, s);
  }
  EXPECT_EQ(lldd::Base64Encode("/x/1"), "L3gvMQ==");
  std::string out;
  for (const char* bad : {"L3gvMQ=", "L3g*MQ==", "L3g=MQ==", "=AAA", "A==="}) EXPECT_FALSE(lldd::Base64Decode(bad, &out)) << bad;
}

TEST(DirectoryEntry, RoundTripsAndRejectsJunk) {
  lldd::DirectoryEntry e;
  e.cluster_id = UINT64_MAX;
  e.role = 2;
  e.instance_id = 0x1234567890abcdefULL;
  e.host = "10.0.0.7";
  e.port = 26000;
  e.paths = {"shm", "tcp"};
  lldd::DirectoryEntry back;
  ASSERT_TRUE(lldd::DirectoryEntry::FromJson(e.ToJson(), &back));
  EXPECT_EQ(back.cluster_id, e.cluster_id);
  EXPECT_EQ(back.instance_id, e.instance_id);
  EXPECT_EQ(back.host, e.host);
  EXPECT_EQ(back.port, e.port);
  EXPECT_EQ(back.paths, e.paths);
  for (const char* bad : {"", "[]", "{}", "{\"cluster_id\":1}", "{\"cluster_id\":\"x\",\"role\":1}"})
    EXPECT_FALSE(lldd::DirectoryEntry::FromJson(bad, &back)) << bad;
}

TEST_F(EtcdTest, LinkByClusterIdAndPullVerified) {
  ForkedServer server(101, DirectoryOptions());
  const int64_t remote = server.RegisterInt32(2, kRows, kCols, 7);
  auto client = Client(201);
  ASSERT_EQ(LinkById(*client, 101), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  PullAndCheck(*client, 101, remote, 7);
  // An explicit address still wins: a wrong one is used, and fails.
  std::vector<Status> rets;
  auto other = Client(202);
  EXPECT_EQ(other->LinkLlmClusters({ClusterAt(101, 1)}, rets, 2000), LLM_LINK_FAILED);
}

TEST_F(EtcdTest, UnknownClusterIdFailsAtOnce) {
  auto client = Client(203);
  EXPECT_EQ(LinkById(*client, 999), LLM_LINK_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("not in the directory"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  // A client is listed, but cannot be linked to.
  auto listed_client = Client(204);
  EXPECT_EQ(LinkById(*client, 204), LLM_LINK_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("client"), std::string::npos);
}

TEST_F(EtcdTest, DuplicateClusterIdRefused) {
  ForkedServer server(102, DirectoryOptions());
  LlmDataDist dup(102, LlmRole::kPrompt);
  EXPECT_EQ(dup.Initialize(ClientOptions(DirectoryOptions())), LLM_PARAM_INVALID);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("already held"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(Listed(102));  // the refusal did not touch the holder's entry
}

TEST_F(EtcdTest, FinalizeRemovesTheEntryAndSetRoleUpdatesIt) {
  auto dd = Client(205);
  EXPECT_TRUE(Listed(205));
  auto peer = Client(206);
  EXPECT_EQ(LinkById(*peer, 205), LLM_LINK_FAILED);  // a client, for now
  std::map<AscendString, AscendString> listen{{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}};
  ASSERT_EQ(dd->SetRole(LlmRole::kPrompt, listen), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  EXPECT_EQ(LinkById(*peer, 205), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  dd->Finalize();
  EXPECT_FALSE(Listed(205));
  // A new instance may take the id at once.
  LlmDataDist again(205, LlmRole::kPrompt);
  EXPECT_EQ(again.Initialize(ClientOptions(DirectoryOptions())), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
}

TEST_F(EtcdTest, KilledServerLeavesWithinTtlAndItsLinkFailsFast) {
  ForkedServer server(103, DirectoryOptions());
  const int64_t remote = server.RegisterInt32(2, kRows, kCols, 3);
  auto client = Client(207, {{OPTION_SYNC_CACHE_WAIT_TIME, "30000"}});
  ASSERT_EQ(LinkById(*client, 103), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  ASSERT_TRUE(Listed(103));
  server.Kill();
  EXPECT_TRUE(lldd_test::WaitUntil([] { return !Listed(103); }, std::chrono::milliseconds(kTtlS * 1000 + 1000)));
  Cache local;
  ASSERT_EQ(client->AllocateCache(Int32Desc(2, kRows, kCols), local), LLM_SUCCESS);
  EXPECT_EQ(client->PullKvCache(CacheIndex{103, remote, 0}, local, 0), LLM_LINK_FAILED);
  EXPECT_EQ(LinkById(*client, 103), LLM_LINK_FAILED);
}

// A frozen peer keeps its connections open: only the directory tells the
// client that it is gone, and the next call fails with LLM_LINK_FAILED
// instead of waiting out its 30 s.
TEST_F(EtcdTest, FrozenServerLeavesAndTheWatchBreaksItsLink) {
  ForkedServer server(104, DirectoryOptions());
  const int64_t remote = server.RegisterInt32(2, kRows, kCols, 4);
  auto client = Client(208, {{OPTION_SYNC_CACHE_WAIT_TIME, "30000"}});
  ASSERT_EQ(LinkById(*client, 104), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  server.Freeze();
  ASSERT_TRUE(lldd_test::WaitUntil([] { return !Listed(104); }, std::chrono::milliseconds(kTtlS * 1000 + 1000)));
  Cache local;
  ASSERT_EQ(client->AllocateCache(Int32Desc(2, kRows, kCols), local), LLM_SUCCESS);
  // The watch event may trail the deletion by a moment (a pull in flight
  // then fails as the link closes under it).
  EXPECT_TRUE(lldd_test::WaitUntil(
      [&] { return client->PullKvCache(CacheIndex{104, remote, 0}, local, 0) == LLM_LINK_FAILED; },
      std::chrono::seconds(5)));
  EXPECT_EQ(client->PullKvCache(CacheIndex{104, remote, 0}, local, 0), LLM_LINK_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("left the directory"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  server.Kill();
}

// etcd going away changes nothing for existing links; new links by id fail
// clearly meanwhile, and the entries are back when it returns.
TEST_F(EtcdTest, EtcdRestartDoesNotDisturbTransfers) {
  ForkedServer server(105, DirectoryOptions());
  const int64_t remote = server.RegisterInt32(2, kRows, kCols, 5);
  auto client = Client(209);
  ASSERT_EQ(LinkById(*client, 105), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  std::atomic<bool> stop{false};
  std::atomic<int> pulls{0}, failures{0};
  std::thread mover([&] {
    Cache local;
    if (client->AllocateCache(Int32Desc(2, kRows, kCols), local) != LLM_SUCCESS) ++failures;
    while (!stop) {
      if (client->PullKvCache(CacheIndex{105, remote, 1}, local, 1) != LLM_SUCCESS ||
          !lldd_test::RowHolds(local, 1, 1, kCols, 5, 1, 1))
        ++failures;
      ++pulls;
    }
  });
  etcd_->Kill();
  LlmDataDist third(210, LlmRole::kDecoder);  // Initialize fails while etcd is down...
  EXPECT_NE(third.Initialize(ClientOptions(DirectoryOptions())), LLM_SUCCESS);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find(etcd_->endpoint()), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_EQ(LinkById(*client, 106), LLM_LINK_FAILED);  // ...and so do links by id
  std::this_thread::sleep_for(std::chrono::milliseconds(kTtlS * 1000 + 500));  // past the TTL
  std::string why;
  ASSERT_TRUE(etcd_->Start(&why)) << why;
  EXPECT_TRUE(lldd_test::WaitUntil([] { return Listed(105) && Listed(209); },
                                   std::chrono::milliseconds(kTtlS * 1000 + 1000)));
  const int before = pulls;
  EXPECT_TRUE(lldd_test::WaitUntil([&] { return pulls > before + 10; }));
  stop = true;
  mover.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(pulls, 0);
  auto late = Client(211);
  EXPECT_EQ(LinkById(*late, 105), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  // The link survived the outage, and the watch did not break it.
  PullAndCheck(*client, 105, remote, 5);
}

// The lease is gone (revoked behind the instance's back, as when etcd lost
// it): the instance notices at its next keep-alive and publishes again.
TEST_F(EtcdTest, LostLeaseIsReestablished) {
  auto dd = Client(216);
  lldd::EtcdClient etcd({etcd_->endpoint()});
  bool found = false;
  lldd::EtcdKeyValue kv;
  ASSERT_TRUE(etcd.Get(Prefix() + "216", lldd::Deadline::AfterMillis(2000), &found, &kv).ok());
  ASSERT_TRUE(found);
  const int64_t lost = kv.lease;
  ASSERT_TRUE(etcd.Revoke(lost, lldd::Deadline::AfterMillis(2000)).ok());
  // Listed again, under a new lease.
  EXPECT_TRUE(lldd_test::WaitUntil(
      [&] {
        return etcd.Get(Prefix() + "216", lldd::Deadline::AfterMillis(2000), &found, &kv).ok() && found &&
               kv.lease != lost;
      },
      std::chrono::milliseconds(kTtlS * 1000 + 1000)));
  dd->Finalize();
  EXPECT_FALSE(Listed(216));
}

// SetRole while etcd is away: the new entry (now listening) reaches etcd
// once it is back, and a peer can then link by id.
TEST_F(EtcdTest, SetRoleDuringOutageIsPublishedLater) {
  auto dd = Client(217);
  etcd_->Kill();
  std::map<AscendString, AscendString> listen{{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}};
  EXPECT_EQ(dd->SetRole(LlmRole::kPrompt, listen), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  std::string why;
  ASSERT_TRUE(etcd_->Start(&why)) << why;
  lldd::EtcdClient etcd({etcd_->endpoint()});
  EXPECT_TRUE(lldd_test::WaitUntil(
      [&] {
        bool found = false;
        lldd::EtcdKeyValue kv;
        lldd::DirectoryEntry e;
        return etcd.Get(Prefix() + "217", lldd::Deadline::AfterMillis(2000), &found, &kv).ok() && found &&
               lldd::DirectoryEntry::FromJson(kv.value, &e) && e.port == dd->GetListenPort();
      },
      std::chrono::milliseconds(kTtlS * 1000 + 1000)));
  auto peer = Client(218);
  EXPECT_EQ(LinkById(*peer, 217), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
}

TEST_F(EtcdTest, BadEndpointStringsAndUnreachableEtcd) {
  for (const char* bad : {"http://127.0.0.1:2379", "etcd://", "etcd://127.0.0.1", "etcd://127.0.0.1:0",
                          "etcd://127.0.0.1:99999", "etcd://127.0.0.1:2379,", "etcd://bad host:1", "etcd://:2379"}) {
    LlmDataDist dd(212, LlmRole::kDecoder);
    EXPECT_EQ(dd.Initialize(ClientOptions({{LlmDataDist::OPTION_DIRECTORY, bad}})), LLM_PARAM_INVALID) << bad;
    EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find(LlmDataDist::OPTION_DIRECTORY), std::string::npos)
        << LlmDataDist::GetLastErrorMessage();
  }
  for (auto [key, bad] : {std::pair{LlmDataDist::OPTION_DIRECTORY_TTL, "0"}, {LlmDataDist::OPTION_DIRECTORY_TTL, "x"},
                          {LlmDataDist::OPTION_DIRECTORY_PREFIX, "no_slash"}}) {
    LlmDataDist dd(213, LlmRole::kDecoder);
    auto options = DirectoryOptions();
    options[key] = bad;
    EXPECT_EQ(dd.Initialize(ClientOptions(options)), LLM_PARAM_INVALID) << key << "=" << bad;
  }
  // Nothing listens there: Initialize fails, naming the endpoint.
  const std::string nowhere = "etcd://127.0.0.1:1";
  LlmDataDist dd(214, LlmRole::kDecoder);
  EXPECT_NE(dd.Initialize(ClientOptions({{LlmDataDist::OPTION_DIRECTORY, nowhere}})), LLM_SUCCESS);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("127.0.0.1:1"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  // The first endpoint is down, the second answers.
  LlmDataDist failover(215, LlmRole::kDecoder);
  EXPECT_EQ(failover.Initialize(ClientOptions({{LlmDataDist::OPTION_DIRECTORY, nowhere + "," + etcd_->endpoint()},
                                               {LlmDataDist::OPTION_DIRECTORY_PREFIX, Prefix()}})),
            LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
}

}  // namespace
