// The HIXL API (include/hixl/hixl.h) across real processes and within one:
// the vendor's quickstart sequence, writes, register-after-connect,
// out-of-region refusals that touch nothing, dead and frozen peers, and
// every error status a method documents.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "hixl/hixl.h"
#include "tests/hixl_peer.h"
#include "tests/peer_process.h"

namespace {

using namespace hixl;  // as the vendor's examples do
using lldd_test::FillHixlPattern;
using lldd_test::FirstPatternMismatch;
using lldd_test::HixlPeer;

constexpr int32_t kTimeoutMs = 5000;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Buf = std::unique_ptr<uint8_t, FreeDeleter>;

Buf Alloc(size_t len, uint8_t fill) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, len) != 0) return nullptr;
  std::memset(p, fill, len);
  return Buf(static_cast<uint8_t*>(p));
}

MemDesc Desc(const Buf& b, size_t len) {
  MemDesc d{};
  d.addr = reinterpret_cast<uintptr_t>(b.get());
  d.len = len;
  return d;
}

bool AllBytes(const uint8_t* p, size_t len, uint8_t v) {
  for (size_t i = 0; i < len; ++i)
    if (p[i] != v) return false;
  return true;
}

// A client-only engine with one registered local buffer.
struct Client {
  Hixl engine;
  Buf buf;
  size_t len = 0;
  MemHandle handle = nullptr;
  Status init = FAILED;  // Initialize's
  // `must_initialize` false: for options that may fail (a port another
  // process took meanwhile); the caller judges `init`.
  explicit Client(size_t n, std::map<AscendString, AscendString> opts = {}, bool must_initialize = true)
      : buf(Alloc(n, 0)), len(n) {
    init = engine.Initialize("127.0.0.1", opts);
    if (must_initialize) {
      EXPECT_EQ(init, SUCCESS);
    }
    if (init == SUCCESS) {
      EXPECT_EQ(engine.RegisterMem(Desc(buf, n), MEM_HOST, handle), SUCCESS);
    }
  }
  ~Client() { engine.Finalize(); }
  uintptr_t at(size_t off) const { return reinterpret_cast<uintptr_t>(buf.get()) + off; }
};

// Over each data path a same-host pair may use.
class HixlPathTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::map<std::string, std::string> PeerOptions() const { return {{"llm.TransferBackend", GetParam()}}; }
  std::map<AscendString, AscendString> ClientOptions() const {
    return {{"llm.TransferBackend", GetParam().c_str()}};
  }
};

// The vendor's quickstart: the server registers and publishes an address,
// the client connects, reads, verifies, disconnects.
TEST_P(HixlPathTest, QuickstartReadAcrossProcesses) {
  constexpr size_t kLen = 1 << 20;
  HixlPeer server(PeerOptions());
  const uint64_t remote = server.Register(kLen, 7);
  ASSERT_NE(remote, 0u);
  Client client(kLen, ClientOptions());
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  TransferOpDesc op{client.at(0), remote, kLen};
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {op}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), kLen, 7), -1);
  EXPECT_EQ(client.engine.Disconnect(server.name().c_str(), kTimeoutMs), SUCCESS);
  EXPECT_EQ(client.engine.DeregisterMem(client.handle), SUCCESS);
  EXPECT_EQ(server.Stop(), 0);
}

// Many ops of one call, READ and WRITE, at odd offsets and lengths.
TEST_P(HixlPathTest, BatchedReadsAndWritesAtOffsets) {
  constexpr size_t kLen = 256 * 1024;
  HixlPeer server(PeerOptions());
  const uint64_t remote = server.Register(kLen, 11);
  ASSERT_NE(remote, 0u);
  Client client(kLen, ClientOptions());
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  // 256 ops: remote slot i (1000 bytes at i*1000+3) into local slot 255-i.
  std::vector<TransferOpDesc> reads;
  for (size_t i = 0; i < 256; ++i) reads.push_back({client.at((255 - i) * 1000), remote + i * 1000 + 3, 1000});
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, reads, kTimeoutMs), SUCCESS);
  for (size_t i = 0; i < 256; ++i)
    ASSERT_EQ(FirstPatternMismatch(client.buf.get() + (255 - i) * 1000, 1000, 11, i * 1000 + 3), -1) << "op " << i;
  // WRITE a fresh pattern over the peer's second half, in 128 ops.
  FillHixlPattern(client.buf.get(), kLen, 12);
  std::vector<TransferOpDesc> writes;
  for (size_t i = 0; i < 128; ++i)
    writes.push_back({client.at(kLen / 2 + i * 1024), remote + kLen / 2 + i * 1024, 1024});
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), WRITE, writes, kTimeoutMs), SUCCESS);
  EXPECT_EQ(server.Check(remote + kLen / 2, kLen / 2, 12, kLen / 2), "ok");
  EXPECT_EQ(server.Check(remote, kLen / 2, 11, 0), "ok");  // the first half untouched
  EXPECT_EQ(client.engine.Disconnect(server.name().c_str(), kTimeoutMs), SUCCESS);
}

// Memory the peer registers after Connect is reachable; deregistered memory is not.
TEST_P(HixlPathTest, RegisterAfterConnectAndDeregister) {
  constexpr size_t kLen = 64 * 1024;
  HixlPeer server(PeerOptions());
  Client client(kLen, ClientOptions());
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  uint64_t handle = 0;
  const uint64_t remote = server.Register(kLen, 21, &handle);
  ASSERT_NE(remote, 0u);
  TransferOpDesc op{client.at(0), remote, kLen};
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {op}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), kLen, 21), -1);
  ASSERT_EQ(server.Command("dereg " + std::to_string(handle)), "ok");
  std::memset(client.buf.get(), 0xEE, kLen);
  EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {op}, kTimeoutMs), PARAM_INVALID);
  EXPECT_TRUE(AllBytes(client.buf.get(), kLen, 0xEE));
  // The same range registered again is reachable again; and when it is
  // replaced (deregistered, registered anew) behind our back, the stale
  // region we knew is noticed and the new one used.
  const std::string args = std::to_string(remote) + " " + std::to_string(kLen);
  std::string answer = server.Command("rereg " + args + " 22");
  ASSERT_EQ(answer.rfind("ok ", 0), 0u) << answer;
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {op}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), kLen, 22), -1);
  ASSERT_EQ(server.Command("dereg " + answer.substr(3)), "ok");
  answer = server.Command("rereg " + args + " 23");
  ASSERT_EQ(answer.rfind("ok ", 0), 0u) << answer;
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {op}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), kLen, 23), -1);
}

// A remote or local range not wholly inside a registration: PARAM_INVALID,
// and not one byte moves, even when the other ops of the call are valid.
TEST_P(HixlPathTest, OutOfRegionTouchesNothing) {
  constexpr size_t kLen = 64 * 1024;
  HixlPeer server(PeerOptions());
  const uint64_t remote = server.Register(kLen, 31);
  ASSERT_NE(remote, 0u);
  Client client(kLen, ClientOptions());
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  std::memset(client.buf.get(), 0xEE, kLen);
  const TransferOpDesc good{client.at(0), remote, 4096};
  const std::vector<TransferOpDesc> bad_remote = {
      {client.at(0), remote + kLen - 100, 101},  // one byte past the end
      {client.at(0), remote - 1, 16},            // one byte before the start
      {client.at(0), remote + kLen, 1},          // just after
      {client.at(0), UINT64_MAX - 8, 16},        // wraps around
  };
  for (const auto& bad : bad_remote) {
    EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {good, bad}, kTimeoutMs), PARAM_INVALID);
    EXPECT_TRUE(AllBytes(client.buf.get(), kLen, 0xEE));
    EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), WRITE, {good, bad}, kTimeoutMs), PARAM_INVALID);
  }
  EXPECT_EQ(server.Check(remote, kLen, 31), "ok");
  // Local ranges outside our registration.
  Buf other = Alloc(4096, 0x11);
  const TransferOpDesc unregistered{reinterpret_cast<uintptr_t>(other.get()), remote, 4096};
  const TransferOpDesc past_local{client.at(kLen - 8), remote, 16};
  for (const auto& bad : {unregistered, past_local}) {
    EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {good, bad}, kTimeoutMs), PARAM_INVALID);
    EXPECT_TRUE(AllBytes(other.get(), 4096, 0x11));
    EXPECT_TRUE(AllBytes(client.buf.get(), kLen, 0xEE));
  }
  EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {TransferOpDesc{client.at(0), remote, 0}}, kTimeoutMs),
            PARAM_INVALID);
}

// A peer that dies: the next transfer fails promptly (FAILED), a frozen one
// times out (TIMEOUT) and no byte of it lands afterwards.
TEST_P(HixlPathTest, FrozenPeerTimesOutAndDeadPeerFails) {
  constexpr size_t kLen = 256 * 1024;
  HixlPeer server(PeerOptions());
  const uint64_t remote = server.Register(kLen, 41);
  ASSERT_NE(remote, 0u);
  Client client(kLen, ClientOptions());
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  TransferOpDesc op{client.at(0), remote, kLen};
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {op}, kTimeoutMs), SUCCESS);
  if (GetParam() == "tcp") {  // shm reads the peer's memory directly: a frozen peer cannot stop it
    server.Freeze();
    std::memset(client.buf.get(), 0xEE, kLen);
    EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {op}, 300), TIMEOUT);
    std::vector<uint8_t> after(client.buf.get(), client.buf.get() + kLen);
    server.Thaw();
    usleep(200 * 1000);  // a late byte would land now
    EXPECT_EQ(std::memcmp(after.data(), client.buf.get(), kLen), 0);
  }
  server.Kill();
  const Status st = client.engine.TransferSync(server.name().c_str(), READ, {op}, kTimeoutMs);
  EXPECT_TRUE(st == FAILED || st == PARAM_INVALID) << st;  // the list of its memory is gone with it
  EXPECT_NE(st, SUCCESS);
  (void)client.engine.Disconnect(server.name().c_str(), 500);
}

INSTANTIATE_TEST_SUITE_P(Paths, HixlPathTest,
                         ::testing::Values("tcp", "shm"
#ifdef LLM_DATADIST_TEST_UCX
                                           ,
                                           "ucx"
#endif
                                           ),
                         [](const auto& info) { return info.param; });

// The vendor's two-engines-in-one-process sequence: both sides register,
// one connects, reads and writes.
TEST(HixlTest, TwoEnginesInOneProcess) {
  constexpr size_t kLen = 128 * 1024;
  std::unique_ptr<HixlPeer> port_holder;  // none: pick a port by trying
  Hixl server;
  std::string name;
  Status st = FAILED;
  for (int port = 20000 + (getpid() % 20000), tries = 0; st != SUCCESS && tries < 50; ++port, ++tries) {
    name = "127.0.0.1:" + std::to_string(port);
    st = server.Initialize(name.c_str(), {});
  }
  ASSERT_EQ(st, SUCCESS);
  Buf sbuf = Alloc(kLen, 0);
  FillHixlPattern(sbuf.get(), kLen, 51);
  MemHandle sh = nullptr;
  ASSERT_EQ(server.RegisterMem(Desc(sbuf, kLen), MEM_DEVICE, sh), SUCCESS);
  Client client(kLen);
  ASSERT_EQ(client.engine.Connect(name.c_str(), kTimeoutMs), SUCCESS);
  const uintptr_t remote = reinterpret_cast<uintptr_t>(sbuf.get());
  ASSERT_EQ(client.engine.TransferSync(name.c_str(), READ, {{client.at(0), remote, kLen}}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), kLen, 51), -1);
  FillHixlPattern(client.buf.get(), kLen, 52);
  ASSERT_EQ(client.engine.TransferSync(name.c_str(), WRITE, {{client.at(100), remote + 100, 5000}}, kTimeoutMs),
            SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(sbuf.get() + 100, 5000, 52, 100), -1);
  EXPECT_EQ(FirstPatternMismatch(sbuf.get() + 5100, kLen - 5100, 51, 5100), -1);
  EXPECT_EQ(client.engine.Disconnect(name.c_str(), kTimeoutMs), SUCCESS);
  EXPECT_EQ(server.DeregisterMem(sh), SUCCESS);
  server.Finalize();
}

namespace {

// The body of GET /metrics from 127.0.0.1:port ("" if none came).
std::string ScrapeMetrics(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    (void)!::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[4096];
    for (pollfd p{fd, POLLIN, 0}; ::poll(&p, 1, 10000) > 0;) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// The value of the first sample whose line starts with `name{` and holds
// every one of `labels`; -1 if there is none.
double Sample(const std::string& text, const std::string& name, const std::vector<std::string>& labels) {
  size_t at = 0;
  while ((at = text.find(name + "{", at)) != std::string::npos) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    at = end;
    bool all = true;
    for (const auto& l : labels) all = all && line.find(l) != std::string::npos;
    if (all) return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

}  // namespace

// HIXL transfers are calls of the engine like any other: with the engine
// option llm.MetricsPort they show in the Prometheus metrics, sync and
// async, by data path and by peer.
TEST(HixlTest, TransfersCountInTheMetrics) {
  constexpr size_t kLen = 64 * 1024;
  Hixl server;
  std::string name;
  Status st = FAILED;
  for (int port = 20000 + (getpid() % 20000) + 77, tries = 0; st != SUCCESS && tries < 50; ++port, ++tries) {
    name = "127.0.0.1:" + std::to_string(port);
    st = server.Initialize(name.c_str(), {{"llm.TransferBackend", "tcp"}});
  }
  ASSERT_EQ(st, SUCCESS);
  Buf sbuf = Alloc(kLen, 0);
  FillHixlPattern(sbuf.get(), kLen, 61);
  MemHandle sh = nullptr;
  ASSERT_EQ(server.RegisterMem(Desc(sbuf, kLen), MEM_HOST, sh), SUCCESS);
  // A free port may be taken by a test running beside this one before the
  // engine binds it: then another.
  uint16_t metrics_port = 0;
  std::unique_ptr<Client> metered;
  for (int tries = 0; tries < 20 && metered == nullptr; ++tries) {
    metrics_port = lldd_test::FreeLoopbackPort();
    const std::string mp = std::to_string(metrics_port);
    metered = std::make_unique<Client>(
        kLen, std::map<AscendString, AscendString>{{"llm.TransferBackend", "tcp"}, {"llm.MetricsPort", mp.c_str()}}, false);
    if (metered->init != SUCCESS) metered.reset();
  }
  ASSERT_NE(metered, nullptr) << "no metrics port could be bound";
  Client& client = *metered;
  ASSERT_EQ(client.engine.Connect(name.c_str(), kTimeoutMs), SUCCESS);
  const uintptr_t remote = reinterpret_cast<uintptr_t>(sbuf.get());
  ASSERT_EQ(client.engine.TransferSync(name.c_str(), READ, {{client.at(0), remote, 4096}, {client.at(8192), remote + 8192, 4096}},
                                       kTimeoutMs),
            SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), 4096, 61), -1);
  TransferReq req = nullptr;
  ASSERT_EQ(client.engine.TransferAsync(name.c_str(), WRITE, {{client.at(0), remote + 16384, 1000}}, {}, req), SUCCESS);
  TransferStatus status = TransferStatus::WAITING;
  for (int i = 0; i < 10000 && status == TransferStatus::WAITING; ++i) {
    ASSERT_EQ(client.engine.GetTransferStatus(req, status), SUCCESS);
    if (status == TransferStatus::WAITING) usleep(1000);
  }
  ASSERT_EQ(status, TransferStatus::COMPLETED);
  // Refused at once (outside the peer's memory): never reaches a data path.
  EXPECT_EQ(client.engine.TransferSync(name.c_str(), READ, {{client.at(0), remote + kLen, 16}}, kTimeoutMs),
            PARAM_INVALID);
  const std::string text = ScrapeMetrics(metrics_port);
  ASSERT_FALSE(text.empty()) << "no answer on the metrics port " << metrics_port;
  const std::string tcp = "transport=\"tcp\"";
  EXPECT_EQ(Sample(text, "llm_datadist_transfer_bytes_total", {tcp, "direction=\"pull\""}), 8192) << text;
  EXPECT_EQ(Sample(text, "llm_datadist_transfer_calls_total", {tcp, "direction=\"pull\""}), 1);
  EXPECT_EQ(Sample(text, "llm_datadist_transfer_bytes_total", {tcp, "direction=\"push\""}), 1000);
  EXPECT_EQ(Sample(text, "llm_datadist_transfer_calls_total", {tcp, "direction=\"push\""}), 1);
  EXPECT_EQ(Sample(text, "llm_datadist_transfers_in_flight", {tcp}), 0);
  EXPECT_EQ(Sample(text, "llm_datadist_peer_transfer_bytes_total", {"direction=\"pull\""}), 8192);
  EXPECT_EQ(client.engine.Disconnect(name.c_str(), kTimeoutMs), SUCCESS);
  EXPECT_EQ(server.DeregisterMem(sh), SUCCESS);
  server.Finalize();
}

TEST(HixlTest, ErrorStatuses) {
  Hixl idle;
  MemHandle h = nullptr;
  Buf b = Alloc(4096, 0);
  EXPECT_EQ(idle.RegisterMem(Desc(b, 4096), MEM_HOST, h), FAILED);  // not initialized
  EXPECT_EQ(idle.Connect("127.0.0.1:1"), FAILED);
  // Names and options.
  for (const char* bad : {"", "localhost:80", "1.2.3.4:", "1.2.3.4:99999", "::1", "[::1", "[1.2.3.4]:5", "1.2.3.4:5x"}) {
    Hixl e;
    EXPECT_EQ(e.Initialize(bad, {}), PARAM_INVALID) << bad;
  }
  {
    Hixl e;
    EXPECT_EQ(e.Initialize("127.0.0.1", {{"NoSuchOption", "1"}}), PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_AUTO_CONNECT, "2"}}), PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_RDMA_TRAFFIC_CLASS, "130"}}), PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_RDMA_SERVICE_LEVEL, "8"}}), PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_BUFFER_POOL, "4"}}), PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_GLOBAL_RESOURCE_CONFIG, "{"}}), PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_GLOBAL_RESOURCE_CONFIG,
                                          R"({"comm_resource_config.protocol_desc": ["tcp:host"]})"}}),
              PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_GLOBAL_RESOURCE_CONFIG, R"({"no.such.field": 1})"}}), PARAM_INVALID);
    EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_ENABLE_USE_FABRIC_MEM, "1"}, {OPTION_BUFFER_POOL, "4:8"}}),
              PARAM_INVALID);
    // The vendor's values are accepted.
    ASSERT_EQ(e.Initialize("127.0.0.1", {{OPTION_GLOBAL_RESOURCE_CONFIG,
                                          R"({"comm_resource_config.protocol_desc": ["hccs:device", "roce:host"],
                                              "channel_pool.max_channel": "10", "channel_pool.high_waterline": "0.3",
                                              "channel_pool.low_waterline": "0.1"})"},
                                         {OPTION_BUFFER_POOL, "4:8"}, {OPTION_RDMA_TRAFFIC_CLASS, "132"},
                                         {OPTION_RDMA_SERVICE_LEVEL, "4"}, {OPTION_AUTO_CONNECT, "0"},
                                         {OPTION_LOCAL_COMM_RES, ""}}),
              SUCCESS);
    EXPECT_EQ(e.Initialize("127.0.0.1", {}), FAILED);  // twice
    // Registration.
    MemDesc null_desc{};
    null_desc.len = 16;
    EXPECT_EQ(e.RegisterMem(null_desc, MEM_HOST, h), PARAM_INVALID);
    EXPECT_EQ(e.RegisterMem(Desc(b, 0), MEM_HOST, h), PARAM_INVALID);
    ASSERT_EQ(e.RegisterMem(Desc(b, 4096), MEM_HOST, h), SUCCESS);
    MemHandle again = nullptr;
    EXPECT_EQ(e.RegisterMem(Desc(b, 4096), MEM_HOST, again), SUCCESS);
    EXPECT_EQ(again, h);
    EXPECT_EQ(e.DeregisterMem(nullptr), PARAM_INVALID);
    EXPECT_EQ(e.DeregisterMem(h), SUCCESS);
    EXPECT_EQ(e.DeregisterMem(h), SUCCESS);  // twice: nothing to do
    EXPECT_EQ(e.DeregisterMem(reinterpret_cast<MemHandle>(uintptr_t{999999})), SUCCESS);  // unknown
    // Connections.
    EXPECT_EQ(e.Connect("127.0.0.1"), PARAM_INVALID);  // a client-only name
    EXPECT_EQ(e.Connect("127.0.0.1:1", 0), PARAM_INVALID);
    EXPECT_EQ(e.Connect("127.0.0.1:1", 500), FAILED);  // nobody listens
    EXPECT_EQ(e.Disconnect("127.0.0.1:1"), NOT_CONNECTED);
    TransferOpDesc op{reinterpret_cast<uintptr_t>(b.get()), 0x1000, 16};
    EXPECT_EQ(e.TransferSync("127.0.0.1:1", READ, {op}), NOT_CONNECTED);
    EXPECT_EQ(e.TransferSync("127.0.0.1:1", READ, {}), PARAM_INVALID);
    EXPECT_EQ(e.TransferSync("127.0.0.1:1", static_cast<TransferOp>(7), {op}), PARAM_INVALID);
    // Not implemented yet: says so.
    TransferReq req = nullptr;
    TransferStatus ts{};
    std::vector<TransferResult> results;
    std::vector<NotifyDesc> notifies;
    AsyncConnectStatus acs{};
    std::map<AscendString, AsyncConnectStatus> all;
    EXPECT_EQ(e.TransferAsync("127.0.0.1:1", READ, {op}, TransferArgs{}, req), NOT_CONNECTED);
    EXPECT_EQ(e.GetTransferStatus(req, ts), PARAM_INVALID);
    EXPECT_EQ(e.GetTransferStatus(reinterpret_cast<TransferReq>(uintptr_t{77}), ts), PARAM_INVALID);
    EXPECT_EQ(e.GetTransferStatus(GetTransferStatusArgs{}, results), SUCCESS);
    EXPECT_TRUE(results.empty());
    EXPECT_EQ(e.SendNotify("127.0.0.1:1", NotifyDesc{"a", "b"}), NOT_CONNECTED);
    EXPECT_EQ(e.SendNotify("127.0.0.1:1", NotifyDesc{"a", "b"}, 0), PARAM_INVALID);
    EXPECT_EQ(e.SendNotify("127.0.0.1:1", NotifyDesc{std::string(1025, 'x').c_str(), "b"}), PARAM_INVALID);
    EXPECT_EQ(e.GetNotifies(notifies), SUCCESS);
    EXPECT_TRUE(notifies.empty());
    EXPECT_EQ(e.ConnectAsync("127.0.0.1:1", 0), PARAM_INVALID);
    EXPECT_EQ(e.DisconnectAsync("127.0.0.1:1", -1), PARAM_INVALID);
    EXPECT_EQ(e.ConnectAsync("nonsense"), PARAM_INVALID);
    EXPECT_EQ(e.GetAsyncConnectStatus("127.0.0.1:2", acs), SUCCESS);
    EXPECT_EQ(acs, AsyncConnectStatus::NOT_CONNECT);
    EXPECT_EQ(e.GetAsyncConnectStatus(all), SUCCESS);
    EXPECT_TRUE(all.empty());
    e.Finalize();
    e.Finalize();  // twice is harmless
  }
  int32_t v = -1;
  EXPECT_EQ(Hixl::GetCapability(AUTO_CONNECT, v), SUCCESS);
  EXPECT_EQ(v, FEATURE_SUPPORTED);
  EXPECT_EQ(Hixl::GetCapability(CLIENT_SERVER_COMM, v), SUCCESS);
  EXPECT_EQ(v, FEATURE_NOT_SUPPORTED);
  EXPECT_EQ(Hixl::GetCapability(static_cast<FeatureType>(99), v), SUCCESS);
  EXPECT_EQ(v, FEATURE_NOT_SUPPORTED);
  v = 7;
  EXPECT_EQ(Hixl::GetCapability(static_cast<FeatureType>(-1), v), PARAM_INVALID);
  EXPECT_EQ(v, 7);  // untouched
}

TEST(HixlTest, ConnectTwiceAndAutoConnect) {
  constexpr size_t kLen = 8192;
  HixlPeer server;
  const uint64_t remote = server.Register(kLen, 61);
  ASSERT_NE(remote, 0u);
  {
    Client client(kLen);
    ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
    EXPECT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), ALREADY_CONNECTED);
    EXPECT_EQ(client.engine.Disconnect(server.name().c_str(), kTimeoutMs), SUCCESS);
    EXPECT_EQ(client.engine.Disconnect(server.name().c_str(), kTimeoutMs), NOT_CONNECTED);
    // Connect again after Disconnect.
    ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
    EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {{client.at(0), remote, kLen}}, kTimeoutMs),
              SUCCESS);
    EXPECT_EQ(FirstPatternMismatch(client.buf.get(), kLen, 61), -1);
  }
  Client automatic(kLen, {{OPTION_AUTO_CONNECT, "1"}});
  ASSERT_EQ(automatic.engine.TransferSync(server.name().c_str(), READ, {{automatic.at(0), remote, kLen}}, kTimeoutMs),
            SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(automatic.buf.get(), kLen, 61), -1);
  EXPECT_EQ(server.Stop(), 0);
}

AsyncConnectStatus WaitWhileBusy(Hixl& e, const std::string& remote) {
  AsyncConnectStatus st = AsyncConnectStatus::CONNECT_PENDING;
  for (int i = 0; i < 3000; ++i) {
    EXPECT_EQ(e.GetAsyncConnectStatus(remote.c_str(), st), SUCCESS);
    if (st != AsyncConnectStatus::CONNECT_PENDING && st != AsyncConnectStatus::CONNECTING &&
        st != AsyncConnectStatus::DISCONNECT_PENDING && st != AsyncConnectStatus::DISCONNECTING)
      break;
    usleep(5000);
  }
  return st;
}

// ConnectAsync/DisconnectAsync to a server process: the states end where
// they should, a connection made so carries transfers, a refused one
// reports CONNECT_FAILED, and a full queue is RESOURCE_EXHAUSTED.
TEST(HixlTest, AsyncConnectAndDisconnect) {
  constexpr size_t kLen = 8192;
  HixlPeer server;
  const uint64_t remote = server.Register(kLen, 81);
  ASSERT_NE(remote, 0u);
  Client client(kLen);
  ASSERT_EQ(client.engine.ConnectAsync(server.name().c_str(), kTimeoutMs), SUCCESS);
  EXPECT_EQ(WaitWhileBusy(client.engine, server.name()), AsyncConnectStatus::CONNECTED);
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {{client.at(0), remote, kLen}}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), kLen, 81), -1);
  std::map<AscendString, AsyncConnectStatus> all;
  ASSERT_EQ(client.engine.GetAsyncConnectStatus(all), SUCCESS);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all.begin()->second, AsyncConnectStatus::CONNECTED);
  // Connect, disconnect, connect again, queued back to back: run in order.
  ASSERT_EQ(client.engine.DisconnectAsync(server.name().c_str(), kTimeoutMs), SUCCESS);
  ASSERT_EQ(client.engine.ConnectAsync(server.name().c_str(), kTimeoutMs), SUCCESS);
  ASSERT_EQ(client.engine.DisconnectAsync(server.name().c_str(), kTimeoutMs), SUCCESS);
  EXPECT_EQ(WaitWhileBusy(client.engine, server.name()), AsyncConnectStatus::NOT_CONNECT);
  EXPECT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {{client.at(0), remote, kLen}}, kTimeoutMs),
            NOT_CONNECTED);
  // Nobody listens there.
  ASSERT_EQ(client.engine.ConnectAsync("127.0.0.1:1", 500), SUCCESS);
  EXPECT_EQ(WaitWhileBusy(client.engine, "127.0.0.1:1"), AsyncConnectStatus::CONNECT_FAILED);
  // A queue of one task, one thread: the second task cannot wait.
  Hixl small;
  ASSERT_EQ(small.Initialize("127.0.0.1", {{OPTION_GLOBAL_RESOURCE_CONFIG,
                                            R"({"connect_pool.thread_num": "1", "connect_pool.task_queue_capacity": "1"})"}}),
            SUCCESS);
  Status last = SUCCESS;
  for (int i = 0; i < 8 && last == SUCCESS; ++i) last = small.ConnectAsync(server.name().c_str(), kTimeoutMs);
  EXPECT_EQ(last, RESOURCE_EXHAUSTED);
  small.Finalize();  // drops what is queued, waits for what runs
  EXPECT_EQ(server.Stop(), 0);
}

TEST(HixlTest, Ipv6Names) {
  Hixl server;
  std::string name;
  Status st = FAILED;
  for (int port = 25000 + (getpid() % 20000), tries = 0; st != SUCCESS && tries < 20; ++port, ++tries) {
    name = "[::1]:" + std::to_string(port);
    st = server.Initialize(name.c_str(), {});
  }
  if (st != SUCCESS) GTEST_SKIP() << "no IPv6 loopback here";
  Buf sbuf = Alloc(4096, 0);
  FillHixlPattern(sbuf.get(), 4096, 71);
  MemHandle sh = nullptr;
  ASSERT_EQ(server.RegisterMem(Desc(sbuf, 4096), MEM_HOST, sh), SUCCESS);
  Hixl client;
  ASSERT_EQ(client.Initialize("[::1]", {}), SUCCESS);
  Buf cbuf = Alloc(4096, 0);
  MemHandle ch = nullptr;
  ASSERT_EQ(client.RegisterMem(Desc(cbuf, 4096), MEM_HOST, ch), SUCCESS);
  ASSERT_EQ(client.Connect(name.c_str(), kTimeoutMs), SUCCESS);
  ASSERT_EQ(client.TransferSync(name.c_str(), READ,
                                {{reinterpret_cast<uintptr_t>(cbuf.get()), reinterpret_cast<uintptr_t>(sbuf.get()), 4096}},
                                kTimeoutMs),
            SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(cbuf.get(), 4096, 71), -1);
  client.Finalize();
  server.Finalize();
}

}  // namespace
