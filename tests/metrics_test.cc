// Metrics (issue 19): GetStats() counts exactly the bytes and calls a test
// made, and the Prometheus endpoint on llm.MetricsPort serves the same
// values in text a Prometheus parser reads, while bad HTTP requests
// (malformed, oversized, slow) are answered or dropped without affecting
// transfers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"
#include "tests/peer_process.h"
#include "tests/wait_until.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::FreeLoopbackPort;
using lldd_test::Int32Desc;

namespace {

constexpr uint64_t kServerId = 31;
constexpr uint64_t kClientId = 32;
constexpr uint64_t kRows = 8, kCols = 16;
constexpr uint64_t kRowBytes = 2 * kCols * 4;  // one row of both tensors


int Dial(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything the server sends until it closes (or 10 s pass).
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string Request(uint16_t port, const std::string& raw) {
  const int fd = Dial(port);
  if (fd < 0) return "";
  (void)!::send(fd, raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string r = ReadAll(fd);
  ::close(fd);
  return r;
}

std::string Body(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

// Samples "name{labels}" -> value, as prometheus_client's own text parser
// reads the exposition; empty (and `why` set) if it cannot run here.
std::map<std::string, double> ParseWithPrometheusClient(const std::string& text, std::string* why) {
  char path[] = "/tmp/lldd_metrics_XXXXXX";
  const int fd = mkstemp(path);
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
  const std::string cmd = std::string("/usr/bin/python3 -c '") +
                          "import sys\n"
                          "from prometheus_client.parser import text_string_to_metric_families as p\n"
                          "for f in p(open(sys.argv[1]).read()):\n"
                          "  for s in f.samples:\n"
                          "    l=\",\".join(k+\"=\"+v for k,v in sorted(s.labels.items()) if k!=\"cluster\")\n"
                          "    print(s.name+\"{\"+l+\"}\", repr(float(s.value)))\n"
                          "' " + path + " 2>&1";
  std::map<std::string, double> samples;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (pipe && (n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int rc = pipe ? ::pclose(pipe) : -1;
  ::unlink(path);
  if (rc != 0) {
    *why = out;
    return {};
  }
  std::istringstream is(out);
  std::string key;
  double v;
  while (is >> key >> v) samples[key] = v;
  return samples;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ForkedServer>(kServerId, std::map<std::string, std::string>{{OPTION_TRANSFER_BACKEND, "tcp"}});
    remote_ = server_->AllocateInt32(2, kRows, kCols, 9);
    // A port free a moment ago may be taken by another test before we bind
    // it: another one then (only "address in use" is retried).
    Status st = LLM_FAILED;
    for (int attempt = 0; attempt < 10 && st != LLM_SUCCESS; ++attempt) {
      metrics_port_ = FreeLoopbackPort();
      st = client_.Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, "tcp"},
                                             {LlmDataDist::OPTION_METRICS_PORT, std::to_string(metrics_port_)}}));
      if (st != LLM_SUCCESS && std::string(LlmDataDist::GetLastErrorMessage()).find("in use") == std::string::npos) break;
    }
    ASSERT_EQ(st, LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
    std::vector<Status> rets;
    ASSERT_EQ(client_.LinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets, 5000), LLM_SUCCESS);
    ASSERT_EQ(client_.AllocateCache(Int32Desc(2, kRows, kCols), local_), LLM_SUCCESS);
  }

  // 3 pulls and 2 pushes of one row each, and one pull of a cache the
  // server does not have.
  void Transfer() {
    for (uint32_t i = 0; i < 3; ++i)
      ASSERT_EQ(client_.PullKvCache(CacheIndex{kServerId, remote_, i}, local_, i), LLM_SUCCESS);
    for (uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(lldd_test::RowHolds(local_, 1, i, kCols, 9, 1, i));
    for (uint32_t i = 0; i < 2; ++i)
      ASSERT_EQ(client_.PushKvCache(local_, CacheIndex{kServerId, remote_, 4 + i}, i), LLM_SUCCESS);
    ASSERT_EQ(client_.PullKvCache(CacheIndex{kServerId, 999, 0}, local_, 0), LLM_KV_CACHE_NOT_EXIST);
  }

  std::unique_ptr<ForkedServer> server_;
  int64_t remote_ = 0;
  uint16_t metrics_port_ = 0;
  LlmDataDist client_{kClientId, LlmRole::kDecoder};
  Cache local_;
};

TEST_F(MetricsTest, GetStatsCountsTheBytesAndCallsMade) {
  Transfer();
  const LlmDataDist::Stats s = client_.GetStats();
  ASSERT_EQ(s.transports.count("tcp"), 1U);
  const auto& tcp = s.transports.at("tcp");
  // The failed pull never reached a data path: only its peer counts it.
  EXPECT_EQ(tcp.pull_calls, 3U);
  EXPECT_EQ(tcp.pull_bytes, 3 * kRowBytes);
  EXPECT_EQ(tcp.push_calls, 2U);
  EXPECT_EQ(tcp.push_bytes, 2 * kRowBytes);
  EXPECT_TRUE(tcp.failures.empty());
  EXPECT_EQ(tcp.pull_latency.count, 3U);
  EXPECT_EQ(tcp.push_latency.count, 2U);
  EXPECT_EQ(tcp.pull_latency.counts.size(), tcp.pull_latency.upper_bounds_seconds.size() + 1);
  EXPECT_GT(tcp.pull_latency.sum_seconds, 0.0);
  ASSERT_EQ(s.peers.count(kServerId), 1U);
  const auto& peer = s.peers.at(kServerId);
  EXPECT_EQ(peer.pull_calls, 4U);
  EXPECT_EQ(peer.pull_bytes, 3 * kRowBytes);
  EXPECT_EQ(peer.push_calls, 2U);
  EXPECT_EQ(peer.push_bytes, 2 * kRowBytes);
  ASSERT_EQ(peer.failures.size(), 1U);
  EXPECT_EQ(peer.failures.at(LLM_KV_CACHE_NOT_EXIST), 1U);
  EXPECT_EQ(s.in_flight, 0);
  EXPECT_EQ(s.links, 1U);
  EXPECT_EQ(s.links_initiated, 1U);
  EXPECT_EQ(s.max_links, 512U);
  // The server saw the bytes arrive: its rows 4 and 5 hold rows 0 and 1.
  EXPECT_EQ(server_->ReadRow(remote_, 1, 4), server_->ReadRow(remote_, 1, 0));
  // A peer's counters go with its link.
  std::vector<Status> rets;
  ASSERT_EQ(client_.UnlinkLlmClusters({ClusterAt(kServerId, 1)}, rets, 5000), LLM_SUCCESS);
  const LlmDataDist::Stats after = client_.GetStats();
  EXPECT_EQ(after.peers.count(kServerId), 0U);
  EXPECT_EQ(after.links, 0U);
  EXPECT_EQ(after.links_closed, 1U);
  EXPECT_EQ(after.transports.at("tcp").pull_calls, 3U) << "transport counters stay";
}

// Calls of the other front ends that run as requests of the engine's queue
// (PushKvRanges here; HIXL's in hixl_test.cc) count as calls too.
TEST_F(MetricsTest, PushKvRangesCountsAsAPush) {
  LlmDataDist::RangeCopy one;
  one.src_tensor = 0;
  one.length = 64;
  one.dst_cache_id = remote_;
  one.dst_tensor = 1;
  one.dst_offset = 3 * kCols * 4;
  LlmDataDist::RangeCopy two = one;
  two.src_tensor = 1;
  two.dst_offset = 6 * kCols * 4;
  ASSERT_EQ(client_.PushKvRanges(local_, kServerId, {one, two}), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  LlmDataDist::RangeCopy outside = one;
  outside.dst_offset = kRows * kCols * 4;  // past the tensor's end: refused before any byte moves
  ASSERT_EQ(client_.PushKvRanges(local_, kServerId, {outside}), LLM_PARAM_INVALID);
  const LlmDataDist::Stats s = client_.GetStats();
  ASSERT_EQ(s.transports.count("tcp"), 1U);
  EXPECT_EQ(s.transports.at("tcp").push_calls, 1U);
  EXPECT_EQ(s.transports.at("tcp").push_bytes, 128U);
  EXPECT_EQ(s.transports.at("tcp").push_latency.count, 1U);
  EXPECT_EQ(s.peers.at(kServerId).push_calls, 1U);
  EXPECT_EQ(s.peers.at(kServerId).push_bytes, 128U);
  EXPECT_EQ(s.in_flight, 0);
}

TEST_F(MetricsTest, PrometheusEndpointServesTheSameValues) {
  Transfer();
  const std::string response = Request(metrics_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(response.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << response.substr(0, 200);
  EXPECT_NE(response.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  std::string why;
  const auto samples = ParseWithPrometheusClient(Body(response), &why);
  if (samples.empty()) GTEST_SKIP() << "prometheus_client (python3-prometheus-client) cannot parse here: " << why;
  auto at = [&](const std::string& key) {
    auto it = samples.find(key);
    EXPECT_NE(it, samples.end()) << key;
    return it == samples.end() ? -1.0 : it->second;
  };
  const double row = static_cast<double>(kRowBytes);
  EXPECT_EQ(at("llm_datadist_transfer_bytes_total{direction=pull,transport=tcp}"), 3 * row);
  EXPECT_EQ(at("llm_datadist_transfer_bytes_total{direction=push,transport=tcp}"), 2 * row);
  EXPECT_EQ(at("llm_datadist_transfer_calls_total{direction=pull,transport=tcp}"), 3);
  EXPECT_EQ(at("llm_datadist_transfer_duration_seconds_count{direction=pull,transport=tcp}"), 3);
  EXPECT_EQ(at("llm_datadist_transfer_duration_seconds_bucket{direction=push,le=+Inf,transport=tcp}"), 2);
  EXPECT_EQ(at("llm_datadist_peer_transfer_calls_total{direction=pull,peer=31}"), 4);
  EXPECT_EQ(at("llm_datadist_peer_transfer_failures_total{peer=31,status=0x5010B002}"), 1);
  EXPECT_EQ(at("llm_datadist_links{}"), 1);
  EXPECT_EQ(at("llm_datadist_links_max{}"), 512);
  EXPECT_EQ(at("llm_datadist_links_established_total{side=initiated}"), 1);
  EXPECT_EQ(at("llm_datadist_requests_in_flight{}"), 0);
}

TEST_F(MetricsTest, BadHttpRequestsAreAnsweredOrDroppedAndTransfersGoOn) {
  // More idle connections than the exporter keeps: the oldest go.
  std::vector<int> idle;
  for (int i = 0; i < 80; ++i) idle.push_back(Dial(metrics_port_));
  // A slow client (slowloris), the newest: a byte every 100 ms.
  const int slow = Dial(metrics_port_);
  ASSERT_GE(slow, 0);
  std::atomic<bool> stop{false};
  std::thread dripper([&] {
    for (char c : std::string("GET /metrics HTTP/1.1\r\nX-Slow: ") + std::string(100, 'a')) {
      if (stop || ::send(slow, &c, 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  EXPECT_EQ(Request(metrics_port_, "GARBAGE\r\n\r\n").rfind("HTTP/1.1 400", 0), 0U);
  EXPECT_EQ(Request(metrics_port_, "POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0U);
  EXPECT_EQ(Request(metrics_port_, "GET /secret HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0U);
  const std::string huge = "GET /metrics HTTP/1.1\r\nX: " + std::string(64 << 10, 'x');
  const std::string r = Request(metrics_port_, huge);
  EXPECT_TRUE(r.empty() || r.rfind("HTTP/1.1 431", 0) == 0) << r.substr(0, 100);
  // Transfers are not affected, and a good scrape is still served.
  Transfer();
  EXPECT_EQ(Request(metrics_port_, "GET /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 200 OK", 0), 0U);
  // The slow request runs past its deadline (2 s) and is dropped.
  pollfd p{slow, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 10000), 1) << "the server hangs up on the slow client";
  stop = true;
  dripper.join();
  ::close(slow);
  for (int fd : idle) ::close(fd);
  EXPECT_EQ(client_.GetStats().transports.at("tcp").pull_calls, 3U);
}

TEST(MetricsOptions, MalformedMetricsPortIsParamInvalid) {
  for (const char* bad : {"x", "0", "70000", "1.2.3.4:", "host:9000"}) {
    LlmDataDist dd(1, LlmRole::kDecoder);
    EXPECT_EQ(dd.Initialize(ClientOptions({{LlmDataDist::OPTION_METRICS_PORT, bad}})), LLM_PARAM_INVALID) << bad;
    EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("llm.MetricsPort"), std::string::npos);
  }
  for (const char* bad : {"0", "65537", "-1", "many"}) {
    LlmDataDist dd(1, LlmRole::kDecoder);
    EXPECT_EQ(dd.Initialize(ClientOptions({{LlmDataDist::OPTION_MAX_LINKS, bad}})), LLM_PARAM_INVALID) << bad;
  }
}

}  // namespace
