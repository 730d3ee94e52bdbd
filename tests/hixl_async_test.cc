// HIXL TransferAsync and both GetTransferStatus overloads against a server
// process: 1024 requests in flight with every byte checked, a frozen peer
// (TIMEOUT, no late byte), a killed peer and a Disconnect (FAILED, nothing
// left WAITING), and the handle rules.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "hixl/hixl.h"
#include "tests/hixl_peer.h"

namespace {

using namespace hixl;
using lldd_test::FillHixlPattern;
using lldd_test::FirstPatternMismatch;
using lldd_test::HixlPeer;

constexpr int32_t kTimeoutMs = 5000;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

struct Client {
  Hixl engine;
  std::unique_ptr<uint8_t, FreeDeleter> buf;
  size_t len;
  MemHandle handle = nullptr;
  Client(size_t n, std::map<AscendString, AscendString> opts) : len(n) {
    void* p = nullptr;
    EXPECT_EQ(posix_memalign(&p, 4096, n), 0);
    std::memset(p, 0, n);
    buf.reset(static_cast<uint8_t*>(p));
    EXPECT_EQ(engine.Initialize("127.0.0.1", opts), SUCCESS);
    MemDesc d{};
    d.addr = reinterpret_cast<uintptr_t>(p);
    d.len = n;
    EXPECT_EQ(engine.RegisterMem(d, MEM_HOST, handle), SUCCESS);
  }
  ~Client() { engine.Finalize(); }
  uintptr_t at(size_t off) const { return reinterpret_cast<uintptr_t>(buf.get()) + off; }
};

// Polls every request until none is WAITING (or `limit` passes); returns
// the final status of each, by user_data index.
// Requests already reported may be passed in `known`.
std::vector<TransferStatus> WaitAll(Hixl& e, size_t n, std::chrono::milliseconds limit,
                                    std::vector<TransferStatus> known = {}) {
  std::vector<TransferStatus> final = known.empty() ? std::vector<TransferStatus>(n, TransferStatus::WAITING) : known;
  size_t done = 0;
  for (auto s : final) done += s != TransferStatus::WAITING;
  const auto end = std::chrono::steady_clock::now() + limit;
  GetTransferStatusArgs args;
  args.skip_waiting = true;
  std::vector<TransferResult> results;
  while (done < n && std::chrono::steady_clock::now() < end) {
    EXPECT_EQ(e.GetTransferStatus(args, results), SUCCESS);
    for (const auto& r : results) {
      EXPECT_NE(r.status, TransferStatus::WAITING);
      const size_t i = reinterpret_cast<uintptr_t>(r.user_data);
      EXPECT_LT(i, n);
      EXPECT_EQ(final[i], TransferStatus::WAITING) << "request " << i << " reported twice";
      final[i] = r.status;
      ++done;
    }
    if (results.empty()) usleep(1000);
  }
  return final;
}

class HixlAsyncTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::map<std::string, std::string> PeerOptions() const { return {{"llm.TransferBackend", GetParam()}}; }
  std::map<AscendString, AscendString> ClientOptions(const char* timeout_ms = "20000") const {
    return {{"llm.TransferBackend", GetParam().c_str()}, {"llm.HixlAsyncTimeoutMs", timeout_ms}};
  }
};

TEST_P(HixlAsyncTest, ThousandRequestsInFlightMixed) {
  constexpr size_t kOps = 1024;
  constexpr size_t kOp = 4096;
  constexpr size_t kHalf = kOps * kOp;
  HixlPeer server(PeerOptions());
  const uint64_t src = server.Register(kHalf, 101);  // what we read
  const uint64_t dst = server.Register(kHalf, 102);  // what we overwrite
  ASSERT_NE(src, 0u);
  ASSERT_NE(dst, 0u);
  Client client(2 * kHalf, ClientOptions());
  FillHixlPattern(client.buf.get() + kHalf, kHalf, 103);
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  std::set<TransferReq> handles;
  for (size_t i = 0; i < kOps; ++i) {
    TransferArgs args;
    args.user_data = reinterpret_cast<const void*>(i);
    TransferReq req = nullptr;
    // Even: read remote slot i into local slot i. Odd: write local slot i
    // of the second half over remote slot (kOps - 1 - i).
    const Status st = i % 2 == 0
        ? client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(i * kOp), src + i * kOp, kOp}}, args, req)
        : client.engine.TransferAsync(server.name().c_str(), WRITE,
                                      {{client.at(kHalf + i * kOp), dst + (kOps - 1 - i) * kOp, kOp}}, args, req);
    ASSERT_EQ(st, SUCCESS) << i;
    EXPECT_TRUE(handles.insert(req).second);
  }
  const auto final = WaitAll(client.engine, kOps, std::chrono::seconds(60));
  for (size_t i = 0; i < kOps; ++i) ASSERT_EQ(final[i], TransferStatus::COMPLETED) << i;
  for (size_t i = 0; i < kOps; i += 2) {
    ASSERT_EQ(FirstPatternMismatch(client.buf.get() + i * kOp, kOp, 101, i * kOp), -1) << i;
    ASSERT_TRUE(std::all_of(client.buf.get() + (i + 1) * kOp, client.buf.get() + (i + 2) * kOp,
                            [](uint8_t b) { return b == 0; }));  // odd slots of the first half untouched
  }
  for (size_t i = 1; i < kOps; i += 2)
    ASSERT_EQ(server.Check(dst + (kOps - 1 - i) * kOp, kOp, 103, i * kOp), "ok") << i;
  for (size_t j = 1; j < kOps; j += 2)  // odd remote slots: nobody wrote them
    ASSERT_EQ(server.Check(dst + j * kOp, kOp, 102, j * kOp), "ok") << j;
  EXPECT_EQ(client.engine.Disconnect(server.name().c_str(), kTimeoutMs), SUCCESS);
}

// Handles: a finished request is reported once, then released.
TEST_P(HixlAsyncTest, HandlesAndQueryArguments) {
  HixlPeer server(PeerOptions());
  const uint64_t src = server.Register(64 * 1024, 111);
  ASSERT_NE(src, 0u);
  Client client(64 * 1024, ClientOptions());
  TransferReq req = nullptr;
  TransferStatus st{};
  EXPECT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(0), src, 16}}, {}, req), NOT_CONNECTED);
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  EXPECT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(0), src + 64 * 1024 - 8, 16}}, {}, req),
            PARAM_INVALID);  // out of region: refused at once
  EXPECT_EQ(client.engine.GetTransferStatus(nullptr, st), PARAM_INVALID);
  ASSERT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(0), src, 4096}}, {}, req), SUCCESS);
  do {
    ASSERT_EQ(client.engine.GetTransferStatus(req, st), SUCCESS);
  } while (st == TransferStatus::WAITING && usleep(1000) == 0);
  EXPECT_EQ(st, TransferStatus::COMPLETED);
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), 4096, 111), -1);
  EXPECT_EQ(client.engine.GetTransferStatus(req, st), PARAM_INVALID);  // released
  // max_query_count bounds one answer; the rest come later.
  for (size_t i = 0; i < 10; ++i) {
    TransferArgs args;
    args.user_data = reinterpret_cast<const void*>(i);
    ASSERT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(i * 4096), src + i * 4096, 4096}},
                                          args, req),
              SUCCESS);
  }
  usleep(100 * 1000);
  GetTransferStatusArgs q;
  q.max_query_count = 3;
  std::vector<TransferResult> results;
  ASSERT_EQ(client.engine.GetTransferStatus(q, results), SUCCESS);
  EXPECT_LE(results.size(), 3u);
  std::vector<TransferStatus> known(10, TransferStatus::WAITING);
  for (const auto& r : results) known[reinterpret_cast<uintptr_t>(r.user_data)] = r.status;
  const auto final = WaitAll(client.engine, 10, std::chrono::seconds(30), known);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(final[i], TransferStatus::COMPLETED) << i;
  EXPECT_EQ(FirstPatternMismatch(client.buf.get(), 10 * 4096, 111), -1);
}

// A killed peer: every request ends FAILED (or COMPLETED, if it finished
// first), none TIMEOUT and none left WAITING.
TEST_P(HixlAsyncTest, KilledPeerFailsEveryRequest) {
  constexpr size_t kOps = 256;
  constexpr size_t kOp = 16 * 1024;
  HixlPeer server(PeerOptions());
  const uint64_t src = server.Register(kOps * kOp, 121);
  ASSERT_NE(src, 0u);
  Client client(kOps * kOp, ClientOptions());
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  for (size_t i = 0; i < kOps; ++i) {
    TransferArgs args;
    args.user_data = reinterpret_cast<const void*>(i);
    TransferReq req = nullptr;
    ASSERT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(i * kOp), src + i * kOp, kOp}}, args,
                                          req),
              SUCCESS);
    if (i == kOps / 4) server.Kill();
  }
  const auto final = WaitAll(client.engine, kOps, std::chrono::seconds(15));  // well within the 20 s deadline
  size_t failed = 0;
  for (size_t i = 0; i < kOps; ++i) {
    ASSERT_TRUE(final[i] == TransferStatus::COMPLETED || final[i] == TransferStatus::FAILED) << i;
    failed += final[i] == TransferStatus::FAILED;
  }
  EXPECT_GT(failed, 0u);
}

// Disconnect with requests outstanding: each ends, none stays WAITING.
TEST_P(HixlAsyncTest, DisconnectEndsOutstandingRequests) {
  constexpr size_t kOps = 256;
  constexpr size_t kOp = 16 * 1024;
  HixlPeer server(PeerOptions());
  const uint64_t src = server.Register(kOps * kOp, 131);
  ASSERT_NE(src, 0u);
  Client client(kOps * kOp, ClientOptions());
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  for (size_t i = 0; i < kOps; ++i) {
    TransferArgs args;
    args.user_data = reinterpret_cast<const void*>(i);
    TransferReq req = nullptr;
    ASSERT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(i * kOp), src + i * kOp, kOp}}, args,
                                          req),
              SUCCESS);
  }
  EXPECT_EQ(client.engine.Disconnect(server.name().c_str(), kTimeoutMs), SUCCESS);
  const auto final = WaitAll(client.engine, kOps, std::chrono::seconds(15));
  for (size_t i = 0; i < kOps; ++i) {
    ASSERT_TRUE(final[i] == TransferStatus::COMPLETED || final[i] == TransferStatus::FAILED) << i;
    if (final[i] == TransferStatus::COMPLETED) {
      ASSERT_EQ(FirstPatternMismatch(client.buf.get() + i * kOp, kOp, 131, i * kOp), -1) << i;
    }
  }
}

// SendNotify right after 64 asynchronous writes, without waiting for them:
// when the peer sees the notification, every written byte is there.
// Notifications arrive in the order sent; 4096 unconsumed per connection.
TEST_P(HixlAsyncTest, NotifyFollowsEarlierTransfers) {
  constexpr size_t kOps = 64;
  constexpr size_t kOp = 64 * 1024;
  HixlPeer server(PeerOptions());
  const uint64_t dst = server.Register(kOps * kOp, 151);
  ASSERT_NE(dst, 0u);
  Client client(kOps * kOp, ClientOptions());
  FillHixlPattern(client.buf.get(), kOps * kOp, 152);
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  for (size_t i = 0; i < kOps; ++i) {
    TransferReq req = nullptr;
    ASSERT_EQ(client.engine.TransferAsync(server.name().c_str(), WRITE, {{client.at(i * kOp), dst + i * kOp, kOp}}, {},
                                          req),
              SUCCESS);
  }
  ASSERT_EQ(client.engine.SendNotify(server.name().c_str(), NotifyDesc{"cache_ready", "block_0"}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(server.Command("await_notifies 1 " + std::to_string(dst) + " " + std::to_string(kOps * kOp) + " 152"),
            "ok cache_ready=block_0 data ok");
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(client.engine.SendNotify(server.name().c_str(), NotifyDesc{"n", std::to_string(i).c_str()}), SUCCESS);
  EXPECT_EQ(server.Command("await_notifies 5 0 0 0"), "ok n=0,n=1,n=2,n=3,n=4 data ok");
  // The receiver's limit.
  Status st = SUCCESS;
  int sent = 0;
  while (st == SUCCESS && sent <= 4096) {
    st = client.engine.SendNotify(server.name().c_str(), NotifyDesc{"x", ""});
    sent += st == SUCCESS;
  }
  EXPECT_EQ(sent, 4096);
  EXPECT_EQ(st, NOTIFY_FAILED);
  const std::string all = server.Command("await_notifies 4096 0 0 0");
  EXPECT_EQ(all.size(), std::string("ok ").size() + 4096 * std::string("x=,").size() - 1 + std::string(" data ok").size());
  EXPECT_EQ(client.engine.SendNotify(server.name().c_str(), NotifyDesc{"again", "1"}), SUCCESS);  // consumed: room again
}

INSTANTIATE_TEST_SUITE_P(Paths, HixlAsyncTest,
                         ::testing::Values("tcp", "shm"
#ifdef LLM_DATADIST_TEST_UCX
                                           ,
                                           "ucx"
#endif
                                           ),
                         [](const auto& info) { return info.param; });

// A frozen peer over tcp: requests end TIMEOUT at their deadline and no
// byte of them lands afterwards. (shm reads the peer's memory directly, so
// a frozen peer does not stop it.)
TEST(HixlAsyncTimeoutTest, FrozenPeerTimesOutWithoutLateWrites) {
  constexpr size_t kOps = 16;
  constexpr size_t kOp = 64 * 1024;
  HixlPeer server(std::map<std::string, std::string>{{"llm.TransferBackend", "tcp"}});
  const uint64_t src = server.Register(kOps * kOp, 141);
  ASSERT_NE(src, 0u);
  Client client(kOps * kOp, {{"llm.TransferBackend", "tcp"}, {"llm.HixlAsyncTimeoutMs", "300"}});
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  // Learn the peer's memory before it freezes.
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {{client.at(0), src, 16}}, kTimeoutMs), SUCCESS);
  std::memset(client.buf.get(), 0xEE, kOps * kOp);
  server.Freeze();
  for (size_t i = 0; i < kOps; ++i) {
    TransferArgs args;
    args.user_data = reinterpret_cast<const void*>(i);
    TransferReq req = nullptr;
    ASSERT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(i * kOp), src + i * kOp, kOp}}, args,
                                          req),
              SUCCESS);
  }
  const auto final = WaitAll(client.engine, kOps, std::chrono::seconds(10));
  for (size_t i = 0; i < kOps; ++i) EXPECT_EQ(final[i], TransferStatus::TIMEOUT) << i;
  std::vector<uint8_t> after(client.buf.get(), client.buf.get() + kOps * kOp);
  server.Thaw();
  usleep(300 * 1000);  // a late byte would land now
  EXPECT_EQ(std::memcmp(after.data(), client.buf.get(), after.size()), 0);
}

// Finalize with requests outstanding to a frozen peer: it returns without
// waiting for their deadline (60 s by default here), ends them, and no byte
// of them lands after it returned, even once the peer runs again.
TEST(HixlAsyncTimeoutTest, FinalizeEndsOutstandingRequestsWithoutLateWrites) {
  constexpr size_t kOps = 64;
  constexpr size_t kOp = 64 * 1024;
  HixlPeer server(std::map<std::string, std::string>{{"llm.TransferBackend", "tcp"}});
  const uint64_t src = server.Register(kOps * kOp, 161);
  ASSERT_NE(src, 0u);
  Client client(kOps * kOp, {{"llm.TransferBackend", "tcp"}});
  ASSERT_EQ(client.engine.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  ASSERT_EQ(client.engine.TransferSync(server.name().c_str(), READ, {{client.at(0), src, 16}}, kTimeoutMs), SUCCESS);
  std::memset(client.buf.get(), 0xEE, kOps * kOp);
  server.Freeze();
  for (size_t i = 0; i < kOps; ++i) {
    TransferReq req = nullptr;
    ASSERT_EQ(client.engine.TransferAsync(server.name().c_str(), READ, {{client.at(i * kOp), src + i * kOp, kOp}}, {},
                                          req),
              SUCCESS);
  }
  const auto start = std::chrono::steady_clock::now();
  client.engine.Finalize();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(ms, 20000) << "Finalize waited for the requests' deadline";
  std::vector<uint8_t> after(client.buf.get(), client.buf.get() + kOps * kOp);
  server.Thaw();
  usleep(300 * 1000);  // a late byte would land now
  EXPECT_EQ(std::memcmp(after.data(), client.buf.get(), after.size()), 0);
  TransferStatus status = TransferStatus::WAITING;
  EXPECT_NE(client.engine.GetTransferStatus(TransferReq{}, status), SUCCESS);  // finalized: no handles
}

}  // namespace
