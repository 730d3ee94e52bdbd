// A malicious peer against a real server (a forked process).
//
// The attacker is hand-written here: it speaks the wire protocol
// (control/protocol.h) over raw TCP sockets, builds every request byte by
// byte, and so can send what no honest instance would. It first links
// legitimately (HELLO on a control connection gives a link id and secret,
// CACHE_QUERY gives the region ids of the server's caches, a second HELLO
// opens a data connection), then sends hostile READ/WRITE requests.
//
// Every hostile request must be refused (an error answer with
// LLM_KV_CACHE_NOT_EXIST or LLM_PARAM_INVALID, or the connection closed if
// the frame itself is malformed); no byte may be read or written outside a
// registered region (every row of the server's caches is checked after
// each test, a second cache serving as guard); and the server must go on
// serving an honest client (which links and pulls at the end of each test).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include "control/protocol.h"
#include "transport/tcp/data_server.h"
#include "llm_datadist/llm_datadist.h"
#include "test_peer.h"
#include "tests/wait_until.h"

using namespace llm_datadist;
using lldd::MsgType;
using lldd::Segment;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;
using lldd_test::Pattern;

namespace {

constexpr uint64_t kServerId = 1;
constexpr uint64_t kClientId = 2;
constexpr uint64_t kEvilId = 666;
constexpr uint32_t kTensors = 2;
constexpr uint64_t kRows = 8;
constexpr uint64_t kCols = 16;
constexpr uint64_t kRegionBytes = kRows * kCols * sizeof(int32_t);  // one tensor
constexpr int64_t kVictimSeed = 1;
constexpr int64_t kGuardSeed = 2;
constexpr int kRecvTimeoutS = 20;

using Bytes = std::vector<uint8_t>;

// ------------------------------------------------------------ wire bytes

class Writer {
 public:
  Writer& U8(uint8_t v) { return Le(v, 1); }
  Writer& U16(uint16_t v) { return Le(v, 2); }
  Writer& U32(uint32_t v) { return Le(v, 4); }
  Writer& U64(uint64_t v) { return Le(v, 8); }
  Writer& Str(const std::string& s) {
    U32(static_cast<uint32_t>(s.size()));
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  Writer& Raw(const Bytes& b) {
    b_.insert(b_.end(), b.begin(), b.end());
    return *this;
  }
  Bytes bytes() const { return b_; }

 private:
  Writer& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Bytes b_;
};

uint16_t T(MsgType t) { return static_cast<uint16_t>(t); }

// magic u32, version u16, type u16, request_id u64, status u32, meta_len u32, data_len u64
Bytes Header(uint16_t type, uint64_t request_id, uint32_t meta_len, uint64_t data_len,
             uint32_t magic = lldd::kFrameMagic, uint16_t version = lldd::kProtocolVersion) {
  return Writer().U32(magic).U16(version).U16(type).U64(request_id).U32(0).U32(meta_len).U64(data_len).bytes();
}

Bytes Frame(uint16_t type, uint64_t request_id, const Bytes& meta, const Bytes& data = {}) {
  return Writer()
      .Raw(Header(type, request_id, static_cast<uint32_t>(meta.size()), data.size()))
      .Raw(meta)
      .Raw(data)
      .bytes();
}

// The handshake itself is encoded by the library (it changes as the
// protocol grows); what the attack needs to vary is patched in afterwards.
Bytes HelloMeta(uint8_t kind, uint64_t cluster, uint64_t link_id, uint64_t secret, uint64_t instance = 0x5eed,
                const std::string& transport = "tcp", uint8_t tcp_join = 1) {
  lldd::Hello h;
  h.kind = lldd::ConnKind::kControl;
  h.cluster_id = cluster;
  h.instance_id = instance;
  h.role = 1;
  h.link_id = link_id;
  h.link_secret = secret;
  h.transport = transport;
  h.offers = {{transport, {}}};  // TCP's connection info is empty
  h.join_info = {tcp_join};      // joins: 1 forward, 2 reverse TCP data connection
  Bytes meta = lldd::EncodeHello(h);
  meta[0] = kind;  // the connection kind is the first byte, sent as any value
  return meta;
}

// timeout u32, count u32, then (region u64, offset u64, length u64) per
// segment. The timeout (the server serves a request until a little after
// it) is generous: sanitizer builds drain megabytes slowly.
Bytes TransferMeta(const std::vector<Segment>& segments, uint32_t count) {
  Writer w;
  w.U32(10000).U32(count);
  for (const Segment& s : segments) w.U64(s.region_id).U64(s.offset).U64(s.length);
  return w.bytes();
}
Bytes TransferMeta(const std::vector<Segment>& segments) {
  return TransferMeta(segments, static_cast<uint32_t>(segments.size()));
}

uint64_t Total(const std::vector<Segment>& segments) {
  uint64_t t = 0;
  for (const Segment& s : segments) t += s.length;
  return t;
}

// The bytes a pattern-filled tensor holds in [offset, offset + length).
Bytes TensorBytes(int64_t seed, uint32_t tensor, uint64_t offset, uint64_t length) {
  std::vector<int32_t> values;
  for (uint64_t r = 0; r < kRows; ++r)
    for (uint64_t c = 0; c < kCols; ++c) values.push_back(Pattern(seed, tensor, r, c));
  const auto* p = reinterpret_cast<const uint8_t*>(values.data());
  return Bytes(p + offset, p + offset + length);
}

// ------------------------------------------------------------ raw socket

struct RawFrame {
  uint16_t type = 0;
  uint64_t request_id = 0;
  uint32_t status = 0;
  Bytes meta;
  Bytes data;
};

class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    timeval tv{kRecvTimeoutS, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool connected() const { return connected_; }

  // False once the peer is gone (a send into a closed connection fails).
  bool Send(const Bytes& b) {
    size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  bool Recv(void* out, size_t n) {
    auto* p = static_cast<uint8_t*>(out);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::recv(fd_, p + done, n - done, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    return true;
  }

  // One whole frame; parsed by hand (magic, version, then the fields).
  bool RecvFrame(RawFrame* f) {
    uint8_t h[lldd::kFrameHeaderBytes];
    if (!Recv(h, sizeof(h))) return false;
    auto le = [&](size_t at, int n) {
      uint64_t v = 0;
      for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(h[at + i]) << (8 * i);
      return v;
    };
    EXPECT_EQ(le(0, 4), lldd::kFrameMagic);
    EXPECT_EQ(le(4, 2), lldd::kProtocolVersion);
    f->type = static_cast<uint16_t>(le(6, 2));
    f->request_id = le(8, 8);
    f->status = static_cast<uint32_t>(le(16, 4));
    const uint64_t meta_len = le(20, 4);
    const uint64_t data_len = le(24, 8);
    if (meta_len > (1U << 20) || data_len > (16U << 20)) {
      ADD_FAILURE() << "the server announces " << meta_len << " metadata and " << data_len << " data bytes";
      return false;
    }
    f->meta.resize(meta_len);
    f->data.resize(data_len);
    return Recv(f->meta.data(), meta_len) && Recv(f->data.data(), data_len);
  }

  // True if the server closes the connection (end of stream or reset)
  // before sending anything; false if it answers or the wait times out.
  bool ClosedByPeer() {
    uint8_t c;
    for (;;) {
      ssize_t n = ::recv(fd_, &c, 1, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET || errno == EPIPE;
      return false;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// ------------------------------------------------------------ honest client

// A client-side cache in user memory, zero-filled.
struct UserCache {
  std::vector<std::vector<int32_t>> tensors;
  Cache cache;
  UserCache(LlmDataDist& dd, uint32_t n) {
    tensors.assign(n, std::vector<int32_t>(kRows * kCols, 0));
    std::vector<uint64_t> addrs;
    for (auto& t : tensors) addrs.push_back(reinterpret_cast<uint64_t>(t.data()));
    int64_t id = -1;
    EXPECT_EQ(dd.RegisterKvCache(Int32Desc(n, kRows, kCols), addrs, RegisterCfg{}, id), LLM_SUCCESS)
        << LlmDataDist::GetLastErrorMessage();
    cache.cache_id = id;
  }
  bool Holds(int64_t seed) const {
    for (uint32_t t = 0; t < tensors.size(); ++t)
      for (uint64_t r = 0; r < kRows; ++r)
        for (uint64_t c = 0; c < kCols; ++c)
          if (tensors[t][r * kCols + c] != Pattern(seed, t, r, c)) return false;
    return true;
  }
  bool IsZero() const {
    for (const auto& t : tensors)
      for (int32_t v : t)
        if (v != 0) return false;
    return true;
  }
};

// Links an honest instance to the server and pulls a whole cache by blocks.
void HonestClientPulls(uint16_t port, int64_t remote_cache, int64_t seed, uint64_t client_id = kClientId) {
  LlmDataDist client(client_id, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions({{OPTION_SYNC_CACHE_WAIT_TIME, "10000"}, {OPTION_TRANSFER_BACKEND, "tcp"}})),
            LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  std::vector<Status> rets;
  ASSERT_EQ(client.LinkLlmClusters({ClusterAt(kServerId, port)}, rets, 10000), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  UserCache local(client, kTensors);
  std::vector<uint64_t> blocks(kRows);
  for (uint64_t i = 0; i < kRows; ++i) blocks[i] = i;
  ASSERT_EQ(client.PullKvBlocks(CacheIndex{kServerId, remote_cache, 0}, local.cache, blocks, blocks), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(local.Holds(seed));
}

// ------------------------------------------------------------ the fixture

class HostilePeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ForkedServer>(kServerId);
    victim_ = server_->RegisterInt32(kTensors, kRows, kCols, kVictimSeed);  // plain user memory
    guard_ = server_->AllocateInt32(kTensors, kRows, kCols, kGuardSeed);    // library-allocated (memfd)
    const int64_t gone = server_->RegisterInt32(1, kRows, kCols, 3);
    ASSERT_GT(victim_, 0);
    ASSERT_GT(guard_, 0);
    ASSERT_GT(gone, 0);

    // The attacker links like anyone else.
    control_ = std::make_unique<RawConn>(server_->port());
    ASSERT_TRUE(control_->connected());
    ASSERT_TRUE(control_->Send(Frame(T(MsgType::kHello), 1, HelloMeta(1, kEvilId, 0, 0))));
    RawFrame ack;
    ASSERT_TRUE(control_->RecvFrame(&ack));
    ASSERT_EQ(ack.type, T(MsgType::kHelloAck));
    ASSERT_EQ(ack.status, LLM_SUCCESS);
    lldd::HelloAck hello_ack;
    ASSERT_TRUE(lldd::DecodeHelloAck(ack.meta, &hello_ack).ok());
    ASSERT_EQ(hello_ack.transports.size(), 1U);
  ASSERT_EQ(hello_ack.transports[0].name, "tcp");
    link_id_ = hello_ack.link_id;
    link_secret_ = hello_ack.link_secret;

    victim_regions_ = QueryRegions(victim_);
    guard_regions_ = QueryRegions(guard_);
    gone_regions_ = QueryRegions(gone);
    ASSERT_EQ(victim_regions_.size(), kTensors);
    ASSERT_EQ(guard_regions_.size(), kTensors);
    ASSERT_EQ(gone_regions_.size(), 1U);
    ASSERT_EQ(server_->Command("unregister " + std::to_string(gone)), "ok");  // its region ids are now stale

    data_ = OpenData();
    ASSERT_TRUE(data_);
  }

  void TearDown() override {
    if (HasFatalFailure()) return;
    ExpectCachesIntact();
    // The attacker's links stay open while an honest client is served.
    HonestClientPulls(server_->port(), victim_, kVictimSeed);
    control_.reset();
    data_.reset();
    EXPECT_EQ(server_->Stop(), 0);
  }

  std::vector<uint64_t> QueryRegions(int64_t cache_id) {
    const uint64_t id = next_id_++;
    EXPECT_TRUE(control_->Send(Frame(T(MsgType::kCacheQuery), id, Writer().U64(static_cast<uint64_t>(cache_id)).bytes())));
    RawFrame info;
    EXPECT_TRUE(control_->RecvFrame(&info));
    EXPECT_EQ(info.type, T(MsgType::kCacheInfo));
    EXPECT_EQ(info.request_id, id);
    EXPECT_EQ(info.status, LLM_SUCCESS);
    lldd::CacheInfo decoded;
    EXPECT_TRUE(lldd::DecodeCacheInfo(info.meta, &decoded).ok());
    EXPECT_EQ(decoded.desc.tensor_bytes, kRegionBytes);
    return decoded.desc.region_ids;
  }

  // A data connection of the attacker's link (null if refused; `*refusal`,
  // if given, then holds the server's answer).
  std::unique_ptr<RawConn> OpenData(RawFrame* refusal = nullptr) {
    auto c = std::make_unique<RawConn>(server_->port());
    if (!c->connected() || !c->Send(Frame(T(MsgType::kHello), 1, HelloMeta(2, kEvilId, link_id_, link_secret_))))
      return nullptr;
    RawFrame ack;
    const bool answered = c->RecvFrame(&ack);
    if (answered && ack.type == T(MsgType::kHelloAck) && ack.status == LLM_SUCCESS) return c;
    if (answered && refusal) *refusal = ack;
    return nullptr;
  }

  // Every row of both caches still holds its pattern.
  void ExpectCachesIntact() {
    for (auto [cache, seed] : {std::pair{victim_, kVictimSeed}, std::pair{guard_, kGuardSeed}}) {
      for (uint32_t t = 0; t < kTensors; ++t) {
        for (uint64_t r = 0; r < kRows; ++r) {
          std::vector<int32_t> expected;
          for (uint64_t c = 0; c < kCols; ++c) expected.push_back(Pattern(seed, t, r, c));
          EXPECT_EQ(server_->ReadRow(cache, t, r), expected) << "cache " << cache << " tensor " << t << " row " << r;
        }
      }
    }
  }

  // Sends a READ or WRITE on `conn` and expects a refusal with `code`
  // (and no data), the connection staying usable.
  void ExpectRefused(RawConn& conn, MsgType type, const std::vector<Segment>& segments, Status code,
                     uint8_t fill = 0xEE) {
    const uint64_t id = next_id_++;
    const bool write = type == MsgType::kWrite;
    const Bytes data = write ? Bytes(Total(segments), fill) : Bytes{};
    ASSERT_TRUE(conn.Send(Frame(T(type), id, TransferMeta(segments), data)));
    RawFrame resp;
    ASSERT_TRUE(conn.RecvFrame(&resp)) << "no answer to request " << id;
    EXPECT_EQ(resp.type, T(write ? MsgType::kWriteResp : MsgType::kReadResp));
    EXPECT_EQ(resp.request_id, id);
    EXPECT_EQ(resp.status, code) << lldd::DecodeText(resp.meta);
    EXPECT_TRUE(resp.data.empty()) << "a refused READ returned " << resp.data.size() << " bytes";
  }

  // A valid READ on `conn` returns exactly the pattern bytes.
  void ExpectRead(RawConn& conn, uint64_t region, int64_t seed, uint32_t tensor, uint64_t offset, uint64_t length) {
    const uint64_t id = next_id_++;
    ASSERT_TRUE(conn.Send(Frame(T(MsgType::kRead), id, TransferMeta({{region, offset, length}}))));
    RawFrame resp;
    ASSERT_TRUE(conn.RecvFrame(&resp));
    EXPECT_EQ(resp.type, T(MsgType::kReadResp));
    EXPECT_EQ(resp.request_id, id);
    ASSERT_EQ(resp.status, LLM_SUCCESS) << lldd::DecodeText(resp.meta);
    EXPECT_EQ(resp.data, TensorBytes(seed, tensor, offset, length));
  }

  // Sends raw bytes on a fresh data connection and expects the server to
  // hang up without answering.
  void ExpectDataConnectionClosed(const Bytes& bytes, const std::string& what) {
    SCOPED_TRACE(what);
    std::unique_ptr<RawConn> c = OpenData();
    ASSERT_TRUE(c);
    c->Send(bytes);  // may fail part-way once the server has hung up
    EXPECT_TRUE(c->ClosedByPeer());
  }

  std::unique_ptr<ForkedServer> server_;
  int64_t victim_ = -1;
  int64_t guard_ = -1;
  std::vector<uint64_t> victim_regions_;
  std::vector<uint64_t> guard_regions_;
  std::vector<uint64_t> gone_regions_;
  std::unique_ptr<RawConn> control_;
  std::unique_ptr<RawConn> data_;
  uint64_t link_id_ = 0;
  uint64_t link_secret_ = 0;
  uint64_t next_id_ = 100;
};

TEST_F(HostilePeerTest, UnknownAndStaleRegionsAreRefused) {
  const uint64_t v0 = victim_regions_[0];
  const uint64_t stale = gone_regions_[0];
  const uint64_t never = std::max({victim_regions_[1], guard_regions_[1], stale}) + 1000;
  for (uint64_t region : {stale, never, uint64_t{0}, UINT64_MAX}) {
    SCOPED_TRACE(region);
    ExpectRefused(*data_, MsgType::kRead, {{region, 0, 64}}, LLM_KV_CACHE_NOT_EXIST);
    ExpectRefused(*data_, MsgType::kWrite, {{region, 0, 64}}, LLM_KV_CACHE_NOT_EXIST);
    // One bad segment refuses the whole request, good segments included.
    ExpectRefused(*data_, MsgType::kRead, {{v0, 0, 64}, {region, 0, 64}}, LLM_KV_CACHE_NOT_EXIST);
    ExpectRefused(*data_, MsgType::kWrite, {{v0, 0, 64}, {region, 0, 64}, {v0, 64, 64}}, LLM_KV_CACHE_NOT_EXIST);
  }
  ExpectRead(*data_, v0, kVictimSeed, 0, 0, kRegionBytes);  // the connection still serves
}

TEST_F(HostilePeerTest, RangesOutsideARegionAreRefused) {
  const uint64_t v0 = victim_regions_[0];
  const uint64_t v1 = victim_regions_[1];
  const uint64_t g0 = guard_regions_[0];
  const std::vector<std::vector<Segment>> outside = {
      {{v0, kRegionBytes, 1}},                      // starts at the end
      {{v0, kRegionBytes + 4, 4}},                  // starts past the end
      {{v0, kRegionBytes - 4, 8}},                  // straddles the end
      {{v0, 0, kRegionBytes + 1}},                  // one byte too long
      {{v1, 1ULL << 40, 16}},                       // far away
      {{v0, UINT64_MAX, 1}},                        // offset "-1"
      {{v0, UINT64_MAX - 255, 512}},                // offset + length wraps to 256
      {{v0, UINT64_MAX - 7, 16}},                   // wraps to 8
      {{v0, (1ULL << 63), (1ULL << 40)}},           // offset "negative" as int64
      {{v0, 0, 64}, {v0, kRegionBytes - 1, 2}},     // the same region again, now outside
      {{v0, 0, 64}, {g0, 0, 64}, {v0, 600, 4}},     // back to an earlier region, outside it
  };
  for (size_t i = 0; i < outside.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectRefused(*data_, MsgType::kRead, outside[i], LLM_PARAM_INVALID);
    // (A WRITE must carry its data; 1 TiB of it is not sent here.)
    if (Total(outside[i]) <= (1U << 20)) ExpectRefused(*data_, MsgType::kWrite, outside[i], LLM_PARAM_INVALID);
  }
  // The edges themselves are fine.
  ExpectRead(*data_, v0, kVictimSeed, 0, kRegionBytes - 1, 1);
  ExpectRead(*data_, v1, kVictimSeed, 1, kRegionBytes - 4, 4);
  ExpectRead(*data_, v1, kVictimSeed, 1, 0, kRegionBytes);
}

TEST_F(HostilePeerTest, RefusedWritesAreDrainedNeverWritten) {
  const uint64_t v0 = victim_regions_[0];
  const uint64_t v1 = victim_regions_[1];
  const uint64_t g0 = guard_regions_[0];
  const uint64_t stale = gone_regions_[0];

  // The payload of a refused WRITE is itself a valid READ frame. If the
  // server did not drain it, it would answer that READ (request 4242).
  const Bytes smuggled = Frame(T(MsgType::kRead), 4242, TransferMeta({{g0, 0, 64}}));
  for (const std::vector<Segment>& target :
       {std::vector<Segment>{{v0, kRegionBytes - 16, smuggled.size()}}, std::vector<Segment>{{stale, 0, smuggled.size()}}}) {
    const uint64_t id = next_id_++;
    ASSERT_TRUE(data_->Send(Frame(T(MsgType::kWrite), id, TransferMeta(target), smuggled)));
    RawFrame resp;
    ASSERT_TRUE(data_->RecvFrame(&resp));
    EXPECT_EQ(resp.type, T(MsgType::kWriteResp));
    EXPECT_EQ(resp.request_id, id);
    EXPECT_NE(resp.status, LLM_SUCCESS);
    ExpectRead(*data_, g0, kGuardSeed, 0, 0, 16);  // the next answer is to this READ, not to 4242
  }

  // A large refused payload (several times the server's drain buffer).
  ExpectRefused(*data_, MsgType::kWrite, {{stale, 0, 5ULL << 20}}, LLM_KV_CACHE_NOT_EXIST);
  ExpectRefused(*data_, MsgType::kWrite, {{v1, 0, 3ULL << 20}}, LLM_PARAM_INVALID);
  // Valid segments before an invalid one are not written either.
  ExpectRefused(*data_, MsgType::kWrite, {{v0, 0, 256}, {v1, 0, kRegionBytes}, {v1, 256, 512}}, LLM_PARAM_INVALID);
  ExpectRefused(*data_, MsgType::kWrite, {{g0, 0, 64}, {UINT64_MAX, 0, 64}}, LLM_KV_CACHE_NOT_EXIST);
  ExpectRead(*data_, v0, kVictimSeed, 0, 0, kRegionBytes);
  ExpectCachesIntact();

  // Control: a valid WRITE on the same connection does land, exactly where asked.
  const uint64_t id = next_id_++;
  const uint64_t row7 = 7 * kCols * sizeof(int32_t);
  ASSERT_TRUE(data_->Send(Frame(T(MsgType::kWrite), id, TransferMeta({{v1, row7, kCols * 4}}), Bytes(kCols * 4, 0x7F))));
  RawFrame resp;
  ASSERT_TRUE(data_->RecvFrame(&resp));
  EXPECT_EQ(resp.status, LLM_SUCCESS) << lldd::DecodeText(resp.meta);
  EXPECT_EQ(server_->ReadRow(victim_, 1, 7), std::vector<int32_t>(kCols, 0x7F7F7F7F));
  std::vector<int32_t> row6;
  for (uint64_t c = 0; c < kCols; ++c) row6.push_back(Pattern(kVictimSeed, 1, 6, c));
  EXPECT_EQ(server_->ReadRow(victim_, 1, 6), row6);
  // Put the row back for the final check.
  ASSERT_TRUE(data_->Send(Frame(T(MsgType::kWrite), id + 1, TransferMeta({{v1, row7, kCols * 4}}),
                                TensorBytes(kVictimSeed, 1, row7, kCols * 4))));
  ASSERT_TRUE(data_->RecvFrame(&resp));
  EXPECT_EQ(resp.status, LLM_SUCCESS);
}

TEST_F(HostilePeerTest, MalformedRequestsCloseTheConnection) {
  const uint64_t v0 = victim_regions_[0];
  const uint16_t kRead = T(MsgType::kRead);
  const uint16_t kWrite = T(MsgType::kWrite);
  auto write_frame = [](uint64_t id, const Bytes& meta, uint64_t data_len, const Bytes& data) {
    return Writer().Raw(Header(T(MsgType::kWrite), id, static_cast<uint32_t>(meta.size()), data_len)).Raw(meta).Raw(data).bytes();
  };

  ExpectDataConnectionClosed(Frame(kRead, 1, TransferMeta({{v0, 0, 0}})), "READ of length 0");
  ExpectDataConnectionClosed(Frame(kWrite, 2, TransferMeta({{v0, 0, 0}})), "WRITE of length 0");
  ExpectDataConnectionClosed(Frame(kRead, 3, TransferMeta({{v0, 0, 64}, {v0, 64, 0}})), "an empty second segment");
  ExpectDataConnectionClosed(Frame(kRead, 4, TransferMeta({{v0, 0, UINT64_MAX}})), "length -1");
  ExpectDataConnectionClosed(Frame(kRead, 5, TransferMeta({{v0, 256, UINT64_MAX - 255}})), "offset + length = 2^64");
  ExpectDataConnectionClosed(Frame(kRead, 6, TransferMeta({{v0, 0, 1ULL << 63}, {v0, 0, 1ULL << 63}})),
                             "lengths summing to 2^64");
  ExpectDataConnectionClosed(Frame(kRead, 7, TransferMeta({{v0, 0, 64}}, UINT32_MAX)), "segment count 2^32-1");
  ExpectDataConnectionClosed(Frame(kRead, 8, TransferMeta({{v0, 0, 64}}, lldd::kMaxSegmentsPerRequest + 1)),
                             "segment count over the limit");
  ExpectDataConnectionClosed(Frame(kRead, 9, TransferMeta({{v0, 0, 64}, {v0, 64, 64}}, 1)), "fewer segments declared");
  ExpectDataConnectionClosed(Frame(kRead, 10, TransferMeta({{v0, 0, 64}}, 0)), "segment count 0");
  ExpectDataConnectionClosed(Frame(kRead, 11, Writer().U32(1000).bytes()), "truncated request");
  ExpectDataConnectionClosed(Frame(kRead, 12, {}), "no metadata at all");
  ExpectDataConnectionClosed(Frame(kRead, 13, Writer().Raw(TransferMeta({{v0, 0, 64}})).U8(0).bytes()),
                             "a trailing byte");
  // data_len not matching the segments: nothing may be written.
  ExpectDataConnectionClosed(write_frame(14, TransferMeta({{v0, 0, 64}}), 32, Bytes(32, 0xEE)), "data_len too small");
  ExpectDataConnectionClosed(write_frame(15, TransferMeta({{v0, 0, 64}}), 128, Bytes(128, 0xEE)), "data_len too large");
  ExpectDataConnectionClosed(write_frame(16, TransferMeta({{v0, 0, 64}}), 0, {}), "WRITE without data");
  ExpectDataConnectionClosed(write_frame(17, TransferMeta({{v0, 0, 64}}), UINT64_MAX, Bytes(64, 0xEE)),
                             "data_len -1");
  ExpectDataConnectionClosed(write_frame(18, TransferMeta({{v0, 0, 64}}), lldd::kMaxDataBytes + 1, Bytes(64, 0xEE)),
                             "data_len over the limit");
  ExpectDataConnectionClosed(Writer().Raw(Header(kRead, 19, 32, 16)).Raw(TransferMeta({{v0, 0, 16}})).Raw(Bytes(16)).bytes(),
                             "READ carrying data");
  ExpectDataConnectionClosed(Header(kRead, 20, lldd::kMaxMetaBytes + 1, 0), "meta_len over the limit");
  ExpectDataConnectionClosed(Header(kRead, 21, UINT32_MAX, 0), "meta_len -1");
  ExpectDataConnectionClosed(Frame(T(MsgType::kHello), 22, HelloMeta(2, kEvilId, link_id_, link_secret_)),
                             "HELLO on a data connection");
  ExpectDataConnectionClosed(Frame(T(MsgType::kReadResp), 23, {}, Bytes(8)), "a response on a data connection");
  ExpectDataConnectionClosed(Frame(T(MsgType::kCacheQuery), 24, Writer().U64(1).bytes()), "a control request");
  ExpectDataConnectionClosed(Header(0, 25, 0, 0), "frame type 0");
  ExpectDataConnectionClosed(Header(999, 26, 0, 0), "frame type 999");
  ExpectDataConnectionClosed(Header(kRead, 27, 0, 0, 0xDEADBEEF), "bad magic mid-stream");
  ExpectDataConnectionClosed(Header(kRead, 28, 0, 0, lldd::kFrameMagic, 2), "bad version mid-stream");

  // A valid request followed by a malformed one: the first is answered.
  std::unique_ptr<RawConn> c = OpenData();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Send(Writer().Raw(Frame(kRead, 30, TransferMeta({{v0, 0, 16}}))).Raw(Header(999, 31, 0, 0)).bytes()));
  RawFrame resp;
  ASSERT_TRUE(c->RecvFrame(&resp));
  EXPECT_EQ(resp.request_id, 30U);
  EXPECT_EQ(resp.data, TensorBytes(kVictimSeed, 0, 0, 16));
  EXPECT_TRUE(c->ClosedByPeer());

  // The attacker's first data connection was never disturbed.
  ExpectRead(*data_, v0, kVictimSeed, 0, 0, kRegionBytes);
}

TEST_F(HostilePeerTest, BadFirstFramesAreDropped) {
  const Bytes hello_meta = HelloMeta(1, 777, 0, 0);
  auto hello_with = [&](uint32_t magic, uint16_t version, uint32_t meta_len) {
    return Writer().Raw(Header(T(MsgType::kHello), 1, meta_len, 0, magic, version)).Raw(hello_meta).bytes();
  };
  std::mt19937 rng(7);
  Bytes garbage(256);
  for (auto& b : garbage) b = static_cast<uint8_t>(rng());
  const std::vector<std::pair<std::string, Bytes>> cases = {
      {"garbage", garbage},
      {"HTTP", [] {
         const std::string get = "GET / HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n";
         return Bytes(get.begin(), get.end());
       }()},
      {"zeros", Bytes(64, 0)},
      {"wrong magic", hello_with(0x3144444D, lldd::kProtocolVersion, static_cast<uint32_t>(hello_meta.size()))},
      {"wrong version", hello_with(lldd::kFrameMagic, lldd::kProtocolVersion + 1, static_cast<uint32_t>(hello_meta.size()))},
      {"version 0", hello_with(lldd::kFrameMagic, 0, static_cast<uint32_t>(hello_meta.size()))},
      {"meta_len over the HELLO limit", hello_with(lldd::kFrameMagic, lldd::kProtocolVersion, 4097)},
      {"meta_len 64 MiB", hello_with(lldd::kFrameMagic, lldd::kProtocolVersion, lldd::kMaxMetaBytes)},
      {"meta_len -1", hello_with(lldd::kFrameMagic, lldd::kProtocolVersion, UINT32_MAX)},
      {"HELLO with data", Writer().Raw(Header(T(MsgType::kHello), 1, static_cast<uint32_t>(hello_meta.size()), 8))
                              .Raw(hello_meta).Raw(Bytes(8)).bytes()},
      {"READ first", Frame(T(MsgType::kRead), 1, TransferMeta({{victim_regions_[0], 0, 64}}))},
      {"HELLO_ACK first", Frame(T(MsgType::kHelloAck), 1, Bytes(40))},
      {"unknown connection kind", Frame(T(MsgType::kHello), 1, HelloMeta(9, 777, 0, 0))},
      {"connection kind 0", Frame(T(MsgType::kHello), 1, HelloMeta(0, 777, 0, 0))},
      {"truncated HELLO", Frame(T(MsgType::kHello), 1, Bytes(hello_meta.begin(), hello_meta.begin() + 20))},
      {"HELLO with trailing bytes", Frame(T(MsgType::kHello), 1, Writer().Raw(hello_meta).U32(0).bytes())},
      {"overlong transport", Frame(T(MsgType::kHello), 1, HelloMeta(1, 777, 0, 0, 1, std::string(1000, 't')))},
      {"string length -1", Frame(T(MsgType::kHello), 1, [&] {
         // The meta ends with the length of the (empty) nonce: make it "-1".
         Bytes m = HelloMeta(1, 777, 0, 0);
         for (size_t i = m.size() - 4; i < m.size(); ++i) m[i] = 0xFF;
         return m;
       }())},
  };
  for (const auto& [what, bytes] : cases) {
    SCOPED_TRACE(what);
    RawConn c(server_->port());
    ASSERT_TRUE(c.connected());
    c.Send(bytes);
    EXPECT_TRUE(c.ClosedByPeer());
  }
  // Connections that close at once, or half-way through a header.
  for (size_t cut : {size_t{0}, size_t{1}, size_t{16}, size_t{31}, size_t{40}}) {
    RawConn c(server_->port());
    ASSERT_TRUE(c.connected());
    const Bytes hello = Frame(T(MsgType::kHello), 1, hello_meta);
    c.Send(Bytes(hello.begin(), hello.begin() + static_cast<ptrdiff_t>(cut)));
  }
  // None of this linked cluster 777, and the attacker's own link still works.
  ExpectRead(*data_, victim_regions_[0], kVictimSeed, 0, 0, 64);
}

TEST_F(HostilePeerTest, DataConnectionsWithoutTheLinkSecretAreRefused) {
  struct Case {
    const char* what;
    uint8_t kind;
    uint64_t cluster, link_id, secret;
    uint8_t tcp_join = 1;
  };
  const Case cases[] = {
      {"wrong secret", 2, kEvilId, link_id_, link_secret_ ^ 1},
      {"secret 0", 2, kEvilId, link_id_, 0},
      {"wrong link id", 2, kEvilId, link_id_ + 1, link_secret_},
      {"another cluster's id", 2, kClientId, link_id_, link_secret_},
      {"the server's own id", 2, kServerId, link_id_, link_secret_},
      {"all zero", 2, 0, 0, 0},
      {"reverse join, wrong secret", 2, kEvilId, link_id_, link_secret_ + 1, 2},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    RawConn c(server_->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.Send(Frame(T(MsgType::kHello), 1, HelloMeta(k.kind, k.cluster, k.link_id, k.secret, 0x5eed, "tcp",
                                                             k.tcp_join))));
    RawFrame ack;
    ASSERT_TRUE(c.RecvFrame(&ack));
    EXPECT_EQ(ack.type, T(MsgType::kHelloAck));
    EXPECT_EQ(ack.status, LLM_NOT_YET_LINK);
    lldd::HelloAck decoded;
    ASSERT_TRUE(lldd::DecodeHelloAck(ack.meta, &decoded).ok());
    EXPECT_EQ(decoded.link_secret, 0U) << "a refusal must not hand out a secret";
    // Requests on the refused connection are not served.
    c.Send(Frame(T(MsgType::kRead), 2, TransferMeta({{victim_regions_[0], 0, 64}})));
    EXPECT_TRUE(c.ClosedByPeer());
  }
  ExpectRead(*data_, victim_regions_[0], kVictimSeed, 0, 0, 64);
}

// A link gets the data connections its pool can use and some slack, not a
// serving thread per connection it opens. Beyond that the server answers
// LLM_LINK_BUSY (which an honest pool waits out: ConnectionPool::Acquire),
// and admits again as soon as one of the link's connections has ended.
TEST_F(HostilePeerTest, DataConnectionsBeyondTheLinksShareAreRefusedAsBusy) {
  std::vector<std::unique_ptr<RawConn>> held;
  RawFrame refusal;
  while (held.size() < 256) {
    auto c = OpenData(&refusal);
    if (!c) break;
    held.push_back(std::move(c));
  }
  // About 2 x the width + 8 (the width being at least 4), counting the
  // fixture's own data connection and any the server has yet to reap.
  EXPECT_GE(held.size() + 1, 12U);
  ASSERT_LT(held.size(), 256U) << "a link was given a serving thread for every connection it opened";
  EXPECT_EQ(refusal.type, T(MsgType::kHelloAck));
  EXPECT_EQ(refusal.status, LLM_LINK_BUSY);
  lldd::HelloAck decoded;
  ASSERT_TRUE(lldd::DecodeHelloAck(refusal.meta, &decoded).ok());
  EXPECT_EQ(decoded.error, "too many data connections on this link");
  // Every admitted connection is still served.
  for (auto& c : held) ExpectRead(*c, victim_regions_[0], kVictimSeed, 0, 0, 64);
  // One hangs up: once its serving thread has ended, the link is admitted again.
  held.pop_back();
  std::unique_ptr<RawConn> again;
  EXPECT_TRUE(lldd_test::WaitUntil([&] { return (again = OpenData()) != nullptr; }))
      << "the link stayed refused after one of its connections closed";
  if (again) ExpectRead(*again, victim_regions_[1], kVictimSeed, 1, 0, 64);
}

TEST_F(HostilePeerTest, SilentAndSlowConnectionsDoNotBlockOthers) {
  // Connections that never say anything.
  std::vector<std::unique_ptr<RawConn>> silent;
  for (int i = 0; i < 16; ++i) {
    silent.push_back(std::make_unique<RawConn>(server_->port()));
    ASSERT_TRUE(silent.back()->connected());
  }
  // And one that sends a HELLO one byte per 100 ms ("slowloris").
  std::atomic<bool> slow_done{false};
  std::thread slow([&] {
    RawConn c(server_->port());
    const Bytes hello = Frame(T(MsgType::kHello), 1, HelloMeta(1, 778, 0, 0));
    for (uint8_t b : hello) {
      if (!c.Send(Bytes{b})) break;  // the server hung up
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    slow_done = true;
  });
  // Meanwhile an honest client links and pulls, and the attacker's link serves.
  HonestClientPulls(server_->port(), guard_, kGuardSeed, 3);
  ExpectRead(*data_, guard_regions_[1], kGuardSeed, 1, 0, kRegionBytes);
  if (slow_done) std::cout << "note: the slow sender finished before the honest client did\n";
  slow.join();
  // The server does not keep silent connections forever (handshake timeout).
  for (auto& c : silent) EXPECT_TRUE(c->ClosedByPeer());
}

// A peer trickling a WRITE holds a lease on the region it writes, and asks
// for the longest timeout the wire allows (a u32 of ms: 49 days). The
// owner's UnregisterKvCache must still return, well before even our cap on
// a peer's request: the request is cancelled (its connection closed) once
// the removal grace has passed. The owner frees the memory as soon as the
// call returns (under ASan a late byte would be a use after free).
TEST_F(HostilePeerTest, TricklingWriteDoesNotHoldUnregisterHostage) {
  // 16 MiB: more than loopback buffers, so once the send below returns the
  // server has taken the request up and is reading its payload.
  constexpr uint64_t kBigRows = 64, kBigCols = 65536, kBigBytes = kBigRows * kBigCols * 4;
  const int64_t target = server_->RegisterInt32(1, kBigRows, kBigCols, 9);
  ASSERT_GT(target, 0);
  const uint64_t id = next_id_++;
  EXPECT_TRUE(control_->Send(Frame(T(MsgType::kCacheQuery), id, Writer().U64(static_cast<uint64_t>(target)).bytes())));
  RawFrame info;
  ASSERT_TRUE(control_->RecvFrame(&info));
  lldd::CacheInfo decoded;
  ASSERT_TRUE(lldd::DecodeCacheInfo(info.meta, &decoded).ok());
  ASSERT_EQ(decoded.desc.region_ids.size(), 1U);

  std::unique_ptr<RawConn> c = OpenData();
  ASSERT_TRUE(c);
  const Bytes meta = Writer().U32(UINT32_MAX).U32(1).U64(decoded.desc.region_ids[0]).U64(0).U64(kBigBytes).bytes();
  const Bytes frame = Frame(T(MsgType::kWrite), next_id_++, meta, Bytes(kBigBytes, 0x5A));
  ASSERT_TRUE(c->Send(Bytes(frame.begin(), frame.end() - 64)));  // all but the last 64 bytes

  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(server_->Command("unregister " + std::to_string(target)), "ok");
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(ms, lldd::kMaxPeerRequestMs / 2) << "UnregisterKvCache waited for the peer's request";
  // The rest of the WRITE finds its connection closed, unanswered.
  c->Send(Bytes(64, 0x5A));  // may fail: the server hung up
  EXPECT_TRUE(c->ClosedByPeer());
}

TEST_F(HostilePeerTest, ImpostorOfALinkedClusterIsRefused) {
  constexpr uint64_t kHonestId = 4;
  LlmDataDist honest(kHonestId, LlmRole::kDecoder);
  ASSERT_EQ(honest.Initialize(ClientOptions({{OPTION_SYNC_CACHE_WAIT_TIME, "10000"}, {OPTION_TRANSFER_BACKEND, "tcp"}})),
            LLM_SUCCESS);
  std::vector<Status> rets;
  ASSERT_EQ(honest.LinkLlmClusters({ClusterAt(kServerId, server_->port())}, rets, 10000), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  // Someone else claims the honest client's cluster id while it is alive.
  for (uint64_t instance : {uint64_t{0}, uint64_t{1}, UINT64_MAX}) {
    RawConn impostor(server_->port());
    ASSERT_TRUE(impostor.Send(Frame(T(MsgType::kHello), 1, HelloMeta(1, kHonestId, 0, 0, instance))));
    RawFrame ack;
    ASSERT_TRUE(impostor.RecvFrame(&ack));
    EXPECT_EQ(ack.type, T(MsgType::kHelloAck));
    EXPECT_NE(ack.status, LLM_SUCCESS);
    lldd::HelloAck decoded;
    ASSERT_TRUE(lldd::DecodeHelloAck(ack.meta, &decoded).ok());
    EXPECT_EQ(decoded.link_secret, 0U);
  }
  // The honest link is untouched.
  UserCache local(honest, kTensors);
  ASSERT_EQ(honest.PullKvBlocks(CacheIndex{kServerId, guard_, 0}, local.cache, {0, 1, 2, 3, 4, 5, 6, 7},
                                {0, 1, 2, 3, 4, 5, 6, 7}),
            LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(local.Holds(kGuardSeed));
}

// Block indexes near 2^64 through the public API: refused before any byte
// moves, on the local side and the remote side.
TEST(HostileApiTest, BlockIndexesNearUint64MaxAreParamInvalid) {
  ForkedServer server(kServerId);
  const int64_t remote = server.RegisterInt32(kTensors, kRows, kCols, kVictimSeed);
  ASSERT_GT(remote, 0);
  LlmDataDist client(kClientId, LlmRole::kDecoder);
  ASSERT_EQ(client.Initialize(ClientOptions({{OPTION_SYNC_CACHE_WAIT_TIME, "10000"}})), LLM_SUCCESS);
  std::vector<Status> rets;
  ASSERT_EQ(client.LinkLlmClusters({ClusterAt(kServerId, server.port())}, rets, 10000), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  UserCache local(client, kTensors);
  UserCache other(client, kTensors);
  const CacheIndex index{kServerId, remote, 0};
  // A block is 64 bytes: 2^58 * 64 wraps to 0, an offset check after the
  // multiplication would pass it.
  const uint64_t huge[] = {UINT64_MAX - 1, UINT64_MAX, 1ULL << 63, 1ULL << 58, (1ULL << 58) + 1, kRows};
  for (uint64_t b : huge) {
    SCOPED_TRACE(b);
    EXPECT_EQ(client.PullKvBlocks(index, local.cache, {b}, {0}), LLM_PARAM_INVALID);
    EXPECT_EQ(client.PullKvBlocks(index, local.cache, {0}, {b}), LLM_PARAM_INVALID);
    EXPECT_EQ(client.PullKvBlocks(index, local.cache, {0, 1, b}, {0, 1, 2}), LLM_PARAM_INVALID);
    EXPECT_EQ(client.PushKvBlocks(local.cache, index, {b}, {0}), LLM_PARAM_INVALID);
    EXPECT_EQ(client.PushKvBlocks(local.cache, index, {0}, {b}), LLM_PARAM_INVALID);
    EXPECT_EQ(client.CopyKvBlocks(local.cache, other.cache, {b}, {{0}}), LLM_PARAM_INVALID);
    EXPECT_EQ(client.CopyKvBlocks(local.cache, other.cache, {0}, {{b}}), LLM_PARAM_INVALID);
  }
  EXPECT_EQ(client.PullKvCache(CacheIndex{kServerId, remote, UINT32_MAX}, local.cache, 0), LLM_PARAM_INVALID);
  EXPECT_EQ(client.PullKvCache(index, local.cache, UINT32_MAX), LLM_PARAM_INVALID);
  EXPECT_EQ(client.PushKvCache(local.cache, CacheIndex{kServerId, remote, UINT32_MAX}, 0), LLM_PARAM_INVALID);
  EXPECT_TRUE(local.IsZero());
  for (uint32_t t = 0; t < kTensors; ++t)
    for (uint64_t r = 0; r < kRows; ++r) {
      std::vector<int32_t> expected;
      for (uint64_t c = 0; c < kCols; ++c) expected.push_back(Pattern(kVictimSeed, t, r, c));
      EXPECT_EQ(server.ReadRow(remote, t, r), expected);
    }
  // A legitimate pull still works.
  std::vector<uint64_t> blocks{0, 1, 2, 3, 4, 5, 6, 7};
  ASSERT_EQ(client.PullKvBlocks(index, local.cache, blocks, blocks), LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(local.Holds(kVictimSeed));
  client.Finalize();
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
