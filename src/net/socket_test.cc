#include "net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>

#include <gtest/gtest.h>

#include <cstdio>

#include <atomic>
#include <chrono>
#include <numeric>
#include <thread>

namespace lldd {
namespace {

using llm_datadist::LLM_LINK_FAILED;
using llm_datadist::LLM_PARAM_INVALID;
using llm_datadist::LLM_TIMEOUT;

// ---------------------------------------------------------------- ParseHostPort

TEST(ParseHostPortTest, Accepted) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  };
  for (const Case& c : {Case{"127.0.0.1:26000", "127.0.0.1", 26000}, Case{"0.0.0.0:0", "0.0.0.0", 0},
                        Case{"255.255.255.255:65535", "255.255.255.255", 65535}, Case{"[::1]:5", "::1", 5},
                        Case{"[::]:80", "::", 80}, Case{"[fe80::1:2]:443", "fe80::1:2", 443},
                        Case{"[::ffff:1.2.3.4]:9", "::ffff:1.2.3.4", 9}, Case{"1.2.3.4:00080", "1.2.3.4", 80}}) {
    SCOPED_TRACE(c.text);
    std::string host;
    uint16_t port = 1;
    Result r = ParseHostPort(c.text, &host, &port);
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(host, c.host);
    EXPECT_EQ(port, c.port);
  }
}

TEST(ParseHostPortTest, Rejected) {
  for (const char* bad : {"", ":", "1.2.3.4", "1.2.3.4:", ":80", "host:1", "localhost:80", "1.2.3.4:70000",
                          "1.2.3.4:65536", "1.2.3.4:123456", "1.2.3.4:-1", "1.2.3.4:+1", "1.2.3.4: 1",
                          "1.2.3.4:1 ", "1.1.1.1:1,2.2.2.2:2", "::1:5", "[::1]", "[::1]:", "[::1]5", "[::1:5",
                          "[]:5", "[1.2.3.4]:x", "1.2.3:5", "256.1.1.1:5", "[::1]:70000"}) {
    SCOPED_TRACE(bad);
    std::string host = "unchanged";
    uint16_t port = 7;
    Result r = ParseHostPort(bad, &host, &port);
    EXPECT_EQ(r.code(), LLM_PARAM_INVALID) << r.message();
    EXPECT_EQ(host, "unchanged");
    EXPECT_EQ(port, 7);
  }
}

TEST(ParseHostPortTest, IsNumericAddress) {
  EXPECT_TRUE(IsNumericAddress("10.0.0.1"));
  EXPECT_TRUE(IsNumericAddress("::1"));
  EXPECT_FALSE(IsNumericAddress("localhost"));
  EXPECT_FALSE(IsNumericAddress(""));
  EXPECT_FALSE(IsNumericAddress("[::1]"));
}

// ---------------------------------------------------------------- IovCursor

TEST(IovCursorTest, EmptyIsDone) {
  IovCursor c;
  EXPECT_TRUE(c.done());
  EXPECT_EQ(c.Remaining(), 0u);
  int n = -1;
  c.Next(4, &n);
  EXPECT_EQ(n, 0);

  char x = 0;
  IovCursor only_empty({{&x, 0}, {&x, 0}});
  EXPECT_TRUE(only_empty.done());
  c.Append(&x, 0);  // ignored
  EXPECT_TRUE(c.done());
}

TEST(IovCursorTest, NextAndAdvanceAcrossBuffers) {
  char a[10];
  char b[5];
  char d[20];
  IovCursor c;
  c.Append(a, sizeof(a));
  c.Append(b, sizeof(b));
  c.Append(d, sizeof(d));
  EXPECT_FALSE(c.done());
  EXPECT_EQ(c.Remaining(), 35u);

  int n = 0;
  const iovec* out = c.Next(8, &n);
  ASSERT_EQ(n, 3);
  EXPECT_EQ(out[0].iov_base, a);
  EXPECT_EQ(out[0].iov_len, 10u);
  EXPECT_EQ(out[2].iov_base, d);
  EXPECT_EQ(out[2].iov_len, 20u);

  // Next respects max.
  out = c.Next(2, &n);
  ASSERT_EQ(n, 2);
  EXPECT_EQ(out[1].iov_base, b);

  c.Advance(3);  // inside a: the first entry left is its unsent part
  EXPECT_EQ(c.Remaining(), 32u);
  out = c.Next(8, &n);
  ASSERT_EQ(n, 3);
  EXPECT_EQ(out[0].iov_base, a + 3);
  EXPECT_EQ(out[0].iov_len, 7u);

  c.Advance(9);  // rest of a, 2 bytes into b
  EXPECT_EQ(c.Remaining(), 23u);
  out = c.Next(8, &n);
  ASSERT_EQ(n, 2);
  EXPECT_EQ(out[0].iov_base, b + 2);
  EXPECT_EQ(out[0].iov_len, 3u);
  EXPECT_EQ(out[1].iov_base, d);

  c.Advance(3);  // exactly the end of b
  EXPECT_EQ(c.Remaining(), 20u);
  out = c.Next(8, &n);
  ASSERT_EQ(n, 1);
  EXPECT_EQ(out[0].iov_base, d);
  EXPECT_EQ(out[0].iov_len, 20u);

  c.Advance(0);
  EXPECT_EQ(c.Remaining(), 20u);

  c.Advance(20);
  EXPECT_TRUE(c.done());
  EXPECT_EQ(c.Remaining(), 0u);
  c.Next(8, &n);
  EXPECT_EQ(n, 0);
}

TEST(IovCursorTest, AdvanceOverEverythingAtOnce) {
  char a[10];
  char b[10];
  IovCursor c({{a, 10}, {b, 10}});
  c.Advance(20);
  EXPECT_TRUE(c.done());
}

TEST(IovCursorTest, EmptyEntriesAreSkipped) {
  char a[4];
  char b[4];
  IovCursor c({{a, 0}, {a, 4}, {b, 0}, {b, 4}, {a, 0}});
  EXPECT_EQ(c.Remaining(), 8u);
  int n = 0;
  const iovec* out = c.Next(8, &n);
  ASSERT_GE(n, 1);
  EXPECT_EQ(out[0].iov_base, a);  // the leading empty entry is skipped
  EXPECT_EQ(out[0].iov_len, 4u);
  c.Advance(4);
  out = c.Next(8, &n);
  ASSERT_GE(n, 1);
  EXPECT_EQ(out[0].iov_base, b);  // the empty entry after a is skipped
  EXPECT_EQ(out[0].iov_len, 4u);
  EXPECT_EQ(c.Remaining(), 4u);
  c.Advance(4);
  EXPECT_TRUE(c.done());  // the trailing empty entry does not keep it open
  EXPECT_EQ(c.Remaining(), 0u);
}

// ---------------------------------------------------------------- sockets

struct Pair {
  Socket client;
  Socket server;
};

Pair ConnectedPair() {
  Socket listener;
  uint16_t port = 0;
  Result r = Listen("127.0.0.1", 0, &listener, &port);
  EXPECT_TRUE(r.ok()) << r.message();
  EXPECT_NE(port, 0);
  Pair p;
  r = Connect("127.0.0.1", port, "", Deadline::AfterMillis(10000), &p.client);
  EXPECT_TRUE(r.ok()) << r.message();
  std::string peer;
  r = Accept(listener, &p.server, &peer);
  EXPECT_TRUE(r.ok()) << r.message();
  EXPECT_TRUE(p.server.valid());
  EXPECT_EQ(peer, "127.0.0.1");
  return p;
}

// Buffer sizes that vary (by a factor of up to 13) and add up to `total`.
std::vector<size_t> Split(size_t total, size_t parts, size_t seed) {
  std::vector<size_t> weights(parts);
  size_t sum = 0;
  for (size_t i = 0; i < parts; ++i) sum += weights[i] = 1 + (i * 7 + seed) % 13;
  std::vector<size_t> sizes(parts);
  size_t left = total;
  for (size_t i = 0; i + 1 < parts; ++i) left -= sizes[i] = total * weights[i] / sum;
  sizes[parts - 1] = left;
  return sizes;
}

TEST(SocketTest, SendRecvEightMiBThroughManySmallBuffers) {
  Pair p = ConnectedPair();
  ASSERT_TRUE(p.client.valid());
  constexpr size_t kTotal = 8u << 20;
  std::vector<uint8_t> src(kTotal);
  for (size_t i = 0; i < kTotal; ++i) src[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  std::vector<uint8_t> dst(kTotal, 0);

  // 1000 buffers on the sending side; 1500 (more than one sendmsg batch of
  // 1024) on the receiving side, split differently.
  std::vector<size_t> send_sizes = Split(kTotal, 1000, 3);
  std::vector<size_t> recv_sizes = Split(kTotal, 1500, 5);
  ASSERT_EQ(std::accumulate(send_sizes.begin(), send_sizes.end(), size_t{0}), kTotal);
  ASSERT_EQ(std::accumulate(recv_sizes.begin(), recv_sizes.end(), size_t{0}), kTotal);

  IovCursor send_cursor;
  size_t at = 0;
  for (size_t s : send_sizes) {
    send_cursor.Append(src.data() + at, s);
    at += s;
  }
  std::vector<iovec> recv_iovs;
  at = 0;
  for (size_t s : recv_sizes) {
    recv_iovs.push_back({dst.data() + at, s});
    at += s;
  }
  IovCursor recv_cursor(std::move(recv_iovs));
  EXPECT_EQ(send_cursor.Remaining(), kTotal);
  EXPECT_EQ(recv_cursor.Remaining(), kTotal);

  Result send_result;
  std::thread sender([&] { send_result = SendAll(p.client.fd(), send_cursor, Deadline::AfterMillis(60000)); });
  Result recv_result = RecvAll(p.server.fd(), recv_cursor, Deadline::AfterMillis(60000));
  sender.join();
  ASSERT_TRUE(send_result.ok()) << send_result.message();
  ASSERT_TRUE(recv_result.ok()) << recv_result.message();
  EXPECT_TRUE(send_cursor.done());
  EXPECT_TRUE(recv_cursor.done());
  EXPECT_TRUE(src == dst) << "received bytes differ";
}

TEST(SocketTest, ContiguousSendRecvBothWays) {
  Pair p = ConnectedPair();
  const char msg[] = "hello over tcp";
  char got[sizeof(msg)] = {};
  ASSERT_TRUE(SendAll(p.client.fd(), msg, sizeof(msg), Deadline::AfterMillis(10000)).ok());
  ASSERT_TRUE(RecvAll(p.server.fd(), got, sizeof(got), Deadline::AfterMillis(10000)).ok());
  EXPECT_STREQ(got, msg);
  ASSERT_TRUE(SendAll(p.server.fd(), "x", 1, Deadline::AfterMillis(10000)).ok());
  char c = 0;
  ASSERT_TRUE(RecvAll(p.client.fd(), &c, 1, Deadline::AfterMillis(10000)).ok());
  EXPECT_EQ(c, 'x');
}

// RecvAll polls for a small buffer and sleeps in recvmsg for a large one
// (RecvWaiting); both must keep the same contract.
class RecvAllTest : public ::testing::TestWithParam<size_t> {};

bool NonBlocking(int fd) { return (fcntl(fd, F_GETFL, 0) & O_NONBLOCK) != 0; }

TEST_P(RecvAllTest, TimesOutOnSilentPeer) {
  Pair p = ConnectedPair();
  std::vector<char> buf(GetParam());
  Result r = RecvAll(p.server.fd(), buf.data(), buf.size(), Deadline::AfterMillis(50));
  EXPECT_EQ(r.code(), LLM_TIMEOUT) << r.message();

  // A partial message then silence also times out.
  ASSERT_TRUE(SendAll(p.client.fd(), "abc", 3, Deadline::AfterMillis(10000)).ok());
  r = RecvAll(p.server.fd(), buf.data(), buf.size(), Deadline::AfterMillis(50));
  EXPECT_EQ(r.code(), LLM_TIMEOUT) << r.message();
  EXPECT_EQ(std::string(buf.data(), 3), "abc");
  EXPECT_FALSE(WaitReadable(p.server.fd(), Deadline::AfterMillis(10)));
  EXPECT_TRUE(NonBlocking(p.server.fd()));
}

TEST_P(RecvAllTest, ReportsPeerClose) {
  Pair p = ConnectedPair();
  ASSERT_TRUE(SendAll(p.client.fd(), "ab", 2, Deadline::AfterMillis(10000)).ok());
  p.client.Close();
  std::vector<char> buf(GetParam() + 2);
  Result r = RecvAll(p.server.fd(), buf.data(), buf.size(), Deadline::AfterMillis(10000));
  EXPECT_EQ(r.code(), LLM_LINK_FAILED) << r.message();
  EXPECT_TRUE(NonBlocking(p.server.fd()));
}

TEST_P(RecvAllTest, ShutdownWakesBlockedReceiver) {
  Pair p = ConnectedPair();
  std::atomic<bool> started{false};
  Result r;
  std::thread t([&] {
    std::vector<char> buf(GetParam());
    started = true;
    // Not Never(): if Shutdown did not wake it, the test fails (a timeout
    // instead of LLM_LINK_FAILED) rather than hanging.
    r = RecvAll(p.server.fd(), buf.data(), buf.size(), Deadline::AfterMillis(60000));
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // most likely asleep in the kernel by now
  p.server.Shutdown();
  t.join();
  EXPECT_EQ(r.code(), LLM_LINK_FAILED) << r.message();
}

INSTANTIATE_TEST_SUITE_P(Sizes, RecvAllTest, ::testing::Values(size_t{4}, size_t{kWaitingReceiveMinBytes}, size_t{1} << 20),
                         [](const ::testing::TestParamInfo<size_t>& info) { return std::to_string(info.param); });

// The bytes a sender trickles in arrive through one call, which returns
// only when the buffers are full; the socket is non-blocking again after.
TEST(SocketTest, RecvWaitingReturnsWhenTheBuffersAreFull) {
  Pair p = ConnectedPair();
  constexpr size_t kPieces = 16;
  constexpr size_t kPiece = 64 << 10;
  std::vector<uint8_t> src(kPieces * kPiece);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 131 + 7);
  std::thread sender([&] {
    for (size_t i = 0; i < kPieces; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ASSERT_TRUE(SendAll(p.client.fd(), src.data() + i * kPiece, kPiece, Deadline::AfterMillis(10000)).ok());
    }
  });
  std::vector<uint8_t> dst(src.size(), 0);
  std::vector<iovec> halves = {{dst.data(), dst.size() / 2}, {dst.data() + dst.size() / 2, dst.size() / 2}};
  IovCursor cursor(std::move(halves));
  IoStep step = RecvWaiting(p.server.fd(), cursor, Deadline::AfterMillis(60000));
  sender.join();
  EXPECT_EQ(step, IoStep::kProgress);
  EXPECT_TRUE(cursor.done()) << cursor.Remaining() << " bytes left after one call";
  EXPECT_TRUE(src == dst) << "received bytes differ";
  EXPECT_TRUE(NonBlocking(p.server.fd()));
}

// What is queued comes first; a rest of 64 KiB or more is waited for in
// the same call, a smaller one is not.
TEST(SocketTest, RecvSomeThenWaitWaitsOnlyForALargeRest) {
  Pair p = ConnectedPair();
  std::vector<uint8_t> src(1 << 20);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + 3);
  ASSERT_TRUE(SendAll(p.client.fd(), src.data(), 4, Deadline::AfterMillis(10000)).ok());
  std::thread sender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(SendAll(p.client.fd(), src.data() + 4, src.size() - 4, Deadline::AfterMillis(10000)).ok());
  });
  std::vector<uint8_t> dst(src.size(), 0);
  IovCursor large;
  large.Append(dst.data(), dst.size());
  EXPECT_EQ(RecvSomeThenWait(p.server.fd(), large, Deadline::AfterMillis(60000)), IoStep::kProgress);
  sender.join();
  EXPECT_TRUE(large.done()) << large.Remaining() << " bytes left after one call";
  EXPECT_TRUE(src == dst) << "received bytes differ";

  ASSERT_TRUE(SendAll(p.client.fd(), "abcd", 4, Deadline::AfterMillis(10000)).ok());
  char small_buf[1000] = {};
  IovCursor small;
  small.Append(small_buf, sizeof(small_buf));
  EXPECT_EQ(RecvSomeThenWait(p.server.fd(), small, Deadline::AfterMillis(60000)), IoStep::kProgress);
  EXPECT_EQ(small.Remaining(), sizeof(small_buf) - 4);
  EXPECT_EQ(std::string(small_buf, 4), "abcd");
  EXPECT_EQ(RecvSomeThenWait(p.server.fd(), small, Deadline::AfterMillis(60000)), IoStep::kWouldBlock);
  EXPECT_TRUE(NonBlocking(p.server.fd()));
}

// At its deadline it returns what came (here: nothing) rather than waiting on.
TEST(SocketTest, RecvWaitingStopsAtTheDeadline) {
  Pair p = ConnectedPair();
  std::vector<uint8_t> dst(1 << 20);
  IovCursor cursor;
  cursor.Append(dst.data(), dst.size());
  EXPECT_EQ(RecvWaiting(p.server.fd(), cursor, Deadline::AfterMillis(30)), IoStep::kWouldBlock);
  ASSERT_TRUE(SendAll(p.client.fd(), "abcd", 4, Deadline::AfterMillis(10000)).ok());
  EXPECT_EQ(RecvWaiting(p.server.fd(), cursor, Deadline::AfterMillis(30)), IoStep::kProgress);
  EXPECT_EQ(cursor.Remaining(), dst.size() - 4);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(dst.data()), 4), "abcd");
  EXPECT_TRUE(NonBlocking(p.server.fd()));
}

TEST(SocketTest, ConnectToClosedPortFails) {
  uint16_t port = 0;
  {
    Socket listener;
    ASSERT_TRUE(Listen("127.0.0.1", 0, &listener, &port).ok());
  }  // closed: nothing listens on the port now
  Socket s;
  Result r = Connect("127.0.0.1", port, "", Deadline::AfterMillis(10000), &s);
  EXPECT_EQ(r.code(), LLM_LINK_FAILED) << r.message();
  EXPECT_FALSE(s.valid());
}

TEST(SocketTest, ConnectAndListenRejectNonNumericHosts) {
  Socket s;
  uint16_t port = 0;
  EXPECT_EQ(Listen("localhost", 0, &s, &port).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(Connect("localhost", 1, "", Deadline::AfterMillis(1000), &s).code(), LLM_PARAM_INVALID);
  EXPECT_EQ(Connect("127.0.0.1", 1, "nope", Deadline::AfterMillis(1000), &s).code(), LLM_PARAM_INVALID);
}

TEST(SocketTest, ConnectFromLocalAddress) {
  Socket listener;
  uint16_t port = 0;
  ASSERT_TRUE(Listen("127.0.0.1", 0, &listener, &port).ok());
  Socket c;
  Result r = Connect("127.0.0.1", port, "127.0.0.1", Deadline::AfterMillis(10000), &c);
  ASSERT_TRUE(r.ok()) << r.message();
  Socket s;
  std::string peer;
  ASSERT_TRUE(Accept(listener, &s, &peer).ok());
  EXPECT_TRUE(s.valid());
}

sockaddr_storage Address(const char* text) {
  sockaddr_storage a{};
  if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in&>(a).sin_addr) == 1) {
    a.ss_family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6&>(a).sin6_addr), 1) << text;
    a.ss_family = AF_INET6;
  }
  return a;
}

TEST(SocketTest, SameHostMeansEqualOrLoopbackAddresses) {
  EXPECT_TRUE(SameHost(Address("127.0.0.1"), Address("127.0.0.1")));
  EXPECT_TRUE(SameHost(Address("127.0.0.1"), Address("127.0.0.2")));
  EXPECT_TRUE(SameHost(Address("::1"), Address("::1")));
  EXPECT_TRUE(SameHost(Address("::ffff:127.0.0.1"), Address("127.0.0.1")));
  EXPECT_TRUE(SameHost(Address("10.1.2.3"), Address("10.1.2.3")));
  EXPECT_TRUE(SameHost(Address("fd00::5"), Address("fd00::5")));
  EXPECT_FALSE(SameHost(Address("10.1.2.3"), Address("10.1.2.4")));
  EXPECT_FALSE(SameHost(Address("127.0.0.1"), Address("10.1.2.3")));
  EXPECT_FALSE(SameHost(Address("fd00::5"), Address("fd00::6")));
  EXPECT_FALSE(SameHost(Address("::ffff:10.1.2.3"), Address("10.1.2.3")));  // mixed families: not judged equal
}

int SysctlBytes(const char* path) {
  FILE* f = std::fopen(path, "r");
  long v = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld", &v) != 1) v = 0;
    std::fclose(f);
  }
  return static_cast<int>(v);
}

TEST(SocketTest, SameHostConnectionsGetSmallFixedBuffers) {
  Pair p = ConnectedPair();  // Connect tuned the client's end
  int rcv = 0;
  int snd = 0;
  socklen_t len = sizeof(int);
  ASSERT_EQ(getsockopt(p.client.fd(), SOL_SOCKET, SO_RCVBUF, &rcv, &len), 0);
  len = sizeof(int);
  ASSERT_EQ(getsockopt(p.client.fd(), SOL_SOCKET, SO_SNDBUF, &snd, &len), 0);
  // The kernel doubles what is set, within net.core.[rw]mem_max.
  EXPECT_EQ(rcv, 2 * std::min(kSameHostSocketBuffer, SysctlBytes("/proc/sys/net/core/rmem_max")));
  EXPECT_EQ(snd, 2 * std::min(kSameHostSocketBuffer, SysctlBytes("/proc/sys/net/core/wmem_max")));
  // Tuning the accepted end too, and again, changes nothing else.
  TuneForTransfer(p.server.fd());
  TuneForTransfer(p.client.fd());
  int again = 0;
  len = sizeof(int);
  ASSERT_EQ(getsockopt(p.server.fd(), SOL_SOCKET, SO_RCVBUF, &again, &len), 0);
  EXPECT_EQ(again, rcv);
  std::vector<uint8_t> out(4 << 20, 0x3C);
  std::vector<uint8_t> in(out.size(), 0);
  std::thread sender([&] { EXPECT_TRUE(SendAll(p.client.fd(), out.data(), out.size(), Deadline::AfterMillis(20000)).ok()); });
  EXPECT_TRUE(RecvAll(p.server.fd(), in.data(), in.size(), Deadline::AfterMillis(20000)).ok());
  sender.join();
  EXPECT_EQ(in, out);
}

TEST(SocketTest, AcceptOnShutDownListenerReturnsInvalidSocket) {
  Socket listener;
  uint16_t port = 0;
  ASSERT_TRUE(Listen("127.0.0.1", 0, &listener, &port).ok());
  listener.Shutdown();
  Socket s;
  std::string peer;
  Result r = Accept(listener, &s, &peer);
  EXPECT_TRUE(r.ok()) << r.message();
  EXPECT_FALSE(s.valid());
}

TEST(SocketTest, MoveTransfersOwnership) {
  Socket listener;
  uint16_t port = 0;
  ASSERT_TRUE(Listen("127.0.0.1", 0, &listener, &port).ok());
  int fd = listener.fd();
  Socket moved(std::move(listener));
  EXPECT_FALSE(listener.valid());  // NOLINT: testing moved-from state
  EXPECT_EQ(moved.fd(), fd);
  Socket assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.fd(), fd);
  EXPECT_FALSE(moved.valid());  // NOLINT
}

}  // namespace
}  // namespace lldd
