#include "control/protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace lldd {
namespace {

// Every strict prefix of `full` must be refused by `decode`.
template <typename Decode>
void ExpectEveryPrefixRefused(const std::vector<uint8_t>& full, Decode decode) {
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_EQ(decode(prefix).code(), llm_datadist::LLM_FAILED) << "prefix of " << n << " bytes";
  }
}


using llm_datadist::LLM_FAILED;

// ---------------------------------------------------------------- helpers

FrameHeader SampleHeader() {
  FrameHeader h;
  h.type = MsgType::kWrite;
  h.request_id = 0x0102030405060708ULL;
  h.status = 0x5010B01AU;
  h.meta_len = 48;
  h.data_len = 4096;
  return h;
}

void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Header layout: magic u32 @0, version u16 @4, type u16 @6, request_id u64 @8,
// status u32 @16, meta_len u32 @20, data_len u64 @24.
constexpr size_t kVersionAt = 4;
constexpr size_t kTypeAt = 6;
constexpr size_t kMetaLenAt = 20;
constexpr size_t kDataLenAt = 24;

Hello SampleHello() {
  Hello m;
  m.kind = ConnKind::kJoin;
  m.cluster_id = 0xFEEDFACECAFEBEEFULL;
  m.role = -7;
  m.link_id = 42;
  m.link_secret = 0x8000000000000001ULL;
  m.transport = "tcp";
  m.offers = {{"shm", {1, 2, 3}}, {"tcp", {}}};
  m.join_info = {9, 8};
  m.auth_nonce = {1, 2, 3, 0, 255};
  return m;
}

HelloAck SampleHelloAck() {
  HelloAck m;
  m.cluster_id = 9;
  m.role = 2;
  m.link_id = 77;
  m.link_secret = UINT64_MAX;
  m.transports = {{"shm", {'s', 'o', 'c', 'k'}}, {"tcp", {}}};
  m.error = "refused: duplicate cluster id";
  return m;
}

CacheInfo SampleCacheInfo() {
  CacheInfo m;
  m.cache_id = -5;  // the id is opaque; negative values must survive
  m.desc.placement = 1;
  m.desc.memory_kind = 2;
  m.desc.num_tensors = 3;
  m.desc.data_type = 27;  // DT_BF16
  m.desc.shape = {4, 16, 128};
  m.desc.tensor_bytes = 4 * 16 * 128 * 2;
  m.desc.region_ids = {11, 12, UINT64_MAX};
  return m;
}

TransferRequest SampleRequest() {
  TransferRequest m;
  m.timeout_ms = 1500;
  m.segments = {{1, 0, 100}, {2, 4096, 28}, {UINT64_MAX, UINT64_MAX - 10, 1}};
  return m;
}

constexpr uint64_t kSampleRequestBytes = 129;

// Layout of an encoded CacheInfo: cache_id i64 @0, placement u32 @8,
// memory_kind u32 @12, num_tensors u32 @16, data_type i32 @20, rank u32 @24,
// dims i64 @28...
constexpr size_t kNumTensorsAt = 16;
constexpr size_t kRankAt = 24;
constexpr size_t kFirstDimAt = 28;

// ---------------------------------------------------------------- frame header

TEST(FrameHeaderTest, RoundTrip) {
  FrameHeader h = SampleHeader();
  uint8_t buf[kFrameHeaderBytes];
  EncodeFrameHeader(h, buf);
  FrameHeader d;
  Result r = DecodeFrameHeader(buf, &d);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(d.type, MsgType::kWrite);
  EXPECT_EQ(d.request_id, h.request_id);
  EXPECT_EQ(d.status, h.status);
  EXPECT_EQ(d.meta_len, h.meta_len);
  EXPECT_EQ(d.data_len, h.data_len);
}

TEST(FrameHeaderTest, EncodingIsLittleEndianWithMagicFirst) {
  uint8_t buf[kFrameHeaderBytes];
  EncodeFrameHeader(SampleHeader(), buf);
  EXPECT_EQ(std::memcmp(buf, "LDD1", 4), 0);
  EXPECT_EQ(buf[kVersionAt], kProtocolVersion);
  EXPECT_EQ(buf[kVersionAt + 1], 0);
  EXPECT_EQ(buf[kTypeAt], static_cast<uint8_t>(MsgType::kWrite));
  EXPECT_EQ(buf[8], 0x08);  // low byte of request id first
  EXPECT_EQ(buf[15], 0x01);
}

TEST(FrameHeaderTest, EveryKnownTypeDecodes) {
  for (uint16_t t = 1; t <= static_cast<uint16_t>(MsgType::kLast); ++t) {
    FrameHeader h;
    h.type = static_cast<MsgType>(t);
    uint8_t buf[kFrameHeaderBytes];
    EncodeFrameHeader(h, buf);
    FrameHeader d;
    Result r = DecodeFrameHeader(buf, &d);
    ASSERT_TRUE(r.ok()) << "type " << t << ": " << r.message();
    EXPECT_EQ(static_cast<uint16_t>(d.type), t);
  }
}

TEST(FrameHeaderTest, RejectsBadMagic) {
  uint8_t buf[kFrameHeaderBytes];
  EncodeFrameHeader(SampleHeader(), buf);
  buf[0] ^= 0x01;
  FrameHeader d;
  Result r = DecodeFrameHeader(buf, &d);
  EXPECT_EQ(r.code(), LLM_FAILED);
  EXPECT_NE(r.message().find("magic"), std::string::npos) << r.message();
}

TEST(FrameHeaderTest, RejectsWrongVersion) {
  for (uint16_t v : {uint16_t{0}, uint16_t{kProtocolVersion - 1}, uint16_t{kProtocolVersion + 1}, uint16_t{0xFFFF}}) {
    uint8_t buf[kFrameHeaderBytes];
    EncodeFrameHeader(SampleHeader(), buf);
    PutU16(buf + kVersionAt, v);
    FrameHeader d;
    Result r = DecodeFrameHeader(buf, &d);
    EXPECT_EQ(r.code(), LLM_FAILED) << "version " << v;
    EXPECT_NE(r.message().find("version"), std::string::npos) << r.message();
  }
}

TEST(FrameHeaderTest, RejectsUnknownType) {
  const uint16_t last = static_cast<uint16_t>(MsgType::kLast);
  for (uint16_t t : {uint16_t{0}, static_cast<uint16_t>(last + 1), uint16_t{0x100}, uint16_t{0xFFFF}}) {
    uint8_t buf[kFrameHeaderBytes];
    EncodeFrameHeader(SampleHeader(), buf);
    PutU16(buf + kTypeAt, t);
    FrameHeader d;
    Result r = DecodeFrameHeader(buf, &d);
    EXPECT_EQ(r.code(), LLM_FAILED) << "type " << t;
    EXPECT_NE(r.message().find("unknown frame type"), std::string::npos) << r.message();
  }
}

TEST(FrameHeaderTest, MetaLenLimit) {
  uint8_t buf[kFrameHeaderBytes];
  FrameHeader h = SampleHeader();
  h.meta_len = kMaxMetaBytes;
  EncodeFrameHeader(h, buf);
  FrameHeader d;
  EXPECT_TRUE(DecodeFrameHeader(buf, &d).ok());

  for (uint32_t len : {kMaxMetaBytes + 1, UINT32_MAX}) {
    PutU32(buf + kMetaLenAt, len);
    Result r = DecodeFrameHeader(buf, &d);
    EXPECT_EQ(r.code(), LLM_FAILED) << "meta_len " << len;
    EXPECT_NE(r.message().find("too large"), std::string::npos) << r.message();
  }
}

TEST(FrameHeaderTest, DataLenLimit) {
  uint8_t buf[kFrameHeaderBytes];
  FrameHeader h = SampleHeader();  // kWrite may carry data
  h.data_len = kMaxDataBytes;
  EncodeFrameHeader(h, buf);
  FrameHeader d;
  EXPECT_TRUE(DecodeFrameHeader(buf, &d).ok());

  for (uint64_t len : {kMaxDataBytes + 1, UINT64_MAX}) {
    PutU64(buf + kDataLenAt, len);
    EXPECT_EQ(DecodeFrameHeader(buf, &d).code(), LLM_FAILED) << "data_len " << len;
  }
}

TEST(FrameHeaderTest, OnlyReadRespAndWriteCarryData) {
  for (uint16_t t = 1; t <= static_cast<uint16_t>(MsgType::kLast); ++t) {
    FrameHeader h;
    h.type = static_cast<MsgType>(t);
    h.data_len = 1;
    uint8_t buf[kFrameHeaderBytes];
    EncodeFrameHeader(h, buf);
    FrameHeader d;
    Result r = DecodeFrameHeader(buf, &d);
    bool may_carry = h.type == MsgType::kReadResp || h.type == MsgType::kWrite;
    if (may_carry) {
      EXPECT_TRUE(r.ok()) << "type " << t << ": " << r.message();
      EXPECT_EQ(d.data_len, 1u);
    } else {
      EXPECT_EQ(r.code(), LLM_FAILED) << "type " << t << " accepted data";
      EXPECT_NE(r.message().find("may not carry data"), std::string::npos) << r.message();
    }
  }
}

// ---------------------------------------------------------------- HELLO

TEST(HelloTest, RoundTrip) {
  Hello m = SampleHello();
  Hello d;
  Result r = DecodeHello(EncodeHello(m), &d);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(d.kind, m.kind);
  EXPECT_EQ(d.cluster_id, m.cluster_id);
  EXPECT_EQ(d.role, m.role);
  EXPECT_EQ(d.link_id, m.link_id);
  EXPECT_EQ(d.link_secret, m.link_secret);
  EXPECT_EQ(d.transport, m.transport);
  EXPECT_EQ(d.offers, m.offers);
  EXPECT_EQ(d.join_info, m.join_info);
  EXPECT_EQ(d.auth_nonce, m.auth_nonce);
}

TEST(HelloTest, RoundTripEmptyStrings) {
  Hello m;  // defaults: control, empty strings, no nonce
  Hello d = SampleHello();
  ASSERT_TRUE(DecodeHello(EncodeHello(m), &d).ok());
  EXPECT_EQ(d.kind, ConnKind::kControl);
  EXPECT_TRUE(d.transport.empty());
  EXPECT_TRUE(d.offers.empty());
  EXPECT_TRUE(d.join_info.empty());
  EXPECT_TRUE(d.auth_nonce.empty());
}

TEST(HelloTest, RejectsUnknownKind) {
  for (uint8_t kind : {uint8_t{0}, uint8_t{3}, uint8_t{255}}) {
    std::vector<uint8_t> meta = EncodeHello(SampleHello());
    meta[0] = kind;  // the kind is the first byte
    Hello d;
    Result r = DecodeHello(meta, &d);
    EXPECT_EQ(r.code(), LLM_FAILED) << "kind " << int{kind};
  }
}

TEST(HelloTest, RejectsOverlongFields) {
  Hello m = SampleHello();
  m.transport = std::string(65, 't');
  Hello d;
  EXPECT_EQ(DecodeHello(EncodeHello(m), &d).code(), LLM_FAILED);

  m = SampleHello();
  m.offers[0].info.assign(kMaxTransportInfo + 1, 'i');
  EXPECT_EQ(DecodeHello(EncodeHello(m), &d).code(), LLM_FAILED);

  m = SampleHello();
  m.offers.assign(kMaxTransportOffers + 1, TransportOffer{"x", {}});
  EXPECT_EQ(DecodeHello(EncodeHello(m), &d).code(), LLM_FAILED);

  m = SampleHello();
  m.auth_nonce.assign(65, 0xAB);
  EXPECT_EQ(DecodeHello(EncodeHello(m), &d).code(), LLM_FAILED);

  m = SampleHello();
  m.transport = std::string(64, 't');
  m.offers.assign(kMaxTransportOffers, TransportOffer{std::string(64, 'n'), std::vector<uint8_t>(kMaxTransportInfo, 1)});
  m.auth_nonce.assign(64, 0xAB);
  EXPECT_TRUE(DecodeHello(EncodeHello(m), &d).ok());
}

TEST(HelloTest, RejectsTrailingBytes) {
  std::vector<uint8_t> meta = EncodeHello(SampleHello());
  meta.push_back(0);
  Hello d;
  EXPECT_EQ(DecodeHello(meta, &d).code(), LLM_FAILED);
}

TEST(HelloTest, EveryTruncationFails) {
  ExpectEveryPrefixRefused(EncodeHello(SampleHello()), [](const std::vector<uint8_t>& b) {
    Hello d;
    return DecodeHello(b, &d);
  });
}

TEST(TransportCallTest, RoundTripAndEveryTruncationFails) {
  TransportCall m{"shm", {1, 2, 3, 4}};
  TransportCall d;
  ASSERT_TRUE(DecodeTransportCall(EncodeTransportCall(m), &d).ok());
  EXPECT_EQ(d.transport, m.transport);
  EXPECT_EQ(d.body, m.body);
  ExpectEveryPrefixRefused(EncodeTransportCall(m), [](const std::vector<uint8_t>& b) {
    TransportCall t;
    return DecodeTransportCall(b, &t);
  });
}

// ---------------------------------------------------------------- HELLO_ACK

TEST(HelloAckTest, RoundTrip) {
  HelloAck m = SampleHelloAck();
  HelloAck d;
  Result r = DecodeHelloAck(EncodeHelloAck(m), &d);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(d.cluster_id, m.cluster_id);
  EXPECT_EQ(d.role, m.role);
  EXPECT_EQ(d.link_id, m.link_id);
  EXPECT_EQ(d.link_secret, m.link_secret);
  EXPECT_EQ(d.transports, m.transports);
  EXPECT_EQ(d.error, m.error);
}

TEST(HelloAckTest, RejectsOverlongErrorAndTrailingBytes) {
  HelloAck m = SampleHelloAck();
  m.error = std::string(4097, 'e');
  HelloAck d;
  EXPECT_EQ(DecodeHelloAck(EncodeHelloAck(m), &d).code(), LLM_FAILED);

  m = SampleHelloAck();
  m.transports[0].name = std::string(kMaxTransportName + 1, 's');
  EXPECT_EQ(DecodeHelloAck(EncodeHelloAck(m), &d).code(), LLM_FAILED);

  std::vector<uint8_t> meta = EncodeHelloAck(SampleHelloAck());
  meta.push_back(1);
  EXPECT_EQ(DecodeHelloAck(meta, &d).code(), LLM_FAILED);
}

TEST(HelloAckTest, EveryTruncationFails) {
  ExpectEveryPrefixRefused(EncodeHelloAck(SampleHelloAck()), [](const std::vector<uint8_t>& b) {
    HelloAck d;
    return DecodeHelloAck(b, &d);
  });
}

// ---------------------------------------------------------------- CACHE_INFO

TEST(CacheInfoTest, RoundTrip) {
  CacheInfo m = SampleCacheInfo();
  CacheInfo d;
  Result r = DecodeCacheInfo(EncodeCacheInfo(m), &d);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(d.cache_id, m.cache_id);
  EXPECT_EQ(d.desc.placement, m.desc.placement);
  EXPECT_EQ(d.desc.memory_kind, m.desc.memory_kind);
  EXPECT_EQ(d.desc.num_tensors, m.desc.num_tensors);
  EXPECT_EQ(d.desc.data_type, m.desc.data_type);
  EXPECT_EQ(d.desc.shape, m.desc.shape);
  EXPECT_EQ(d.desc.tensor_bytes, m.desc.tensor_bytes);
  EXPECT_EQ(d.desc.region_ids, m.desc.region_ids);
}

TEST(CacheInfoTest, RoundTripAtLimits) {
  CacheInfo m = SampleCacheInfo();
  m.desc.num_tensors = kMaxTensorsPerCache;
  m.desc.region_ids.resize(kMaxTensorsPerCache);
  for (uint32_t i = 0; i < kMaxTensorsPerCache; ++i) m.desc.region_ids[i] = i + 1000;
  m.desc.shape.assign(kMaxShapeRank, 1);
  CacheInfo d;
  Result r = DecodeCacheInfo(EncodeCacheInfo(m), &d);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(d.desc.region_ids, m.desc.region_ids);
  EXPECT_EQ(d.desc.shape.size(), kMaxShapeRank);
}

TEST(CacheInfoTest, RejectsRankZeroAndTooHigh) {
  CacheInfo m = SampleCacheInfo();
  m.desc.shape.clear();
  CacheInfo d;
  EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED);

  m.desc.shape.assign(kMaxShapeRank + 1, 1);
  EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED);
}

TEST(CacheInfoTest, RejectsHugeRankWithoutAllocating) {
  std::vector<uint8_t> meta = EncodeCacheInfo(SampleCacheInfo());
  PutU32(meta.data() + kRankAt, UINT32_MAX);
  CacheInfo d;
  EXPECT_EQ(DecodeCacheInfo(meta, &d).code(), LLM_FAILED);
}

TEST(CacheInfoTest, RejectsNonPositiveDims) {
  for (int64_t bad : {int64_t{0}, int64_t{-1}, INT64_MIN}) {
    for (size_t pos = 0; pos < 3; ++pos) {
      CacheInfo m = SampleCacheInfo();
      m.desc.shape[pos] = bad;
      CacheInfo d;
      EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED)
          << "dim " << pos << " = " << bad;
    }
  }
  // Patch the first dim directly too, to be sure the check is on the wire value.
  std::vector<uint8_t> meta = EncodeCacheInfo(SampleCacheInfo());
  PutU64(meta.data() + kFirstDimAt, 0);
  CacheInfo d;
  EXPECT_EQ(DecodeCacheInfo(meta, &d).code(), LLM_FAILED);
}

TEST(CacheInfoTest, RejectsTensorCountOutOfRange) {
  CacheInfo m = SampleCacheInfo();
  m.desc.num_tensors = 0;
  m.desc.region_ids.clear();
  CacheInfo d;
  EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED);

  m.desc.num_tensors = kMaxTensorsPerCache + 1;
  m.desc.region_ids.assign(kMaxTensorsPerCache + 1, 7);
  EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED);

  std::vector<uint8_t> meta = EncodeCacheInfo(SampleCacheInfo());
  PutU32(meta.data() + kNumTensorsAt, UINT32_MAX);
  EXPECT_EQ(DecodeCacheInfo(meta, &d).code(), LLM_FAILED);
}

TEST(CacheInfoTest, RejectsRegionIdCountMismatch) {
  CacheInfo m = SampleCacheInfo();  // 3 tensors
  m.desc.region_ids = {1, 2};
  CacheInfo d;
  EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED);
  m.desc.region_ids = {1, 2, 3, 4};
  EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED);
  m.desc.region_ids = {};
  EXPECT_EQ(DecodeCacheInfo(EncodeCacheInfo(m), &d).code(), LLM_FAILED);
}

TEST(CacheInfoTest, RejectsPartialTrailingBytes) {
  std::vector<uint8_t> meta = EncodeCacheInfo(SampleCacheInfo());
  meta.push_back(0);
  CacheInfo d;
  EXPECT_EQ(DecodeCacheInfo(meta, &d).code(), LLM_FAILED);
}

TEST(CacheInfoTest, EveryTruncationFails) {
  ExpectEveryPrefixRefused(EncodeCacheInfo(SampleCacheInfo()), [](const std::vector<uint8_t>& b) {
    CacheInfo d;
    return DecodeCacheInfo(b, &d);
  });
}

// ---------------------------------------------------------------- cache id

TEST(CacheIdTest, RoundTrip) {
  for (int64_t id : {int64_t{0}, int64_t{1}, int64_t{-1}, INT64_MIN, INT64_MAX}) {
    int64_t d = 12345;
    ASSERT_TRUE(DecodeCacheId(EncodeCacheId(id), &d).ok());
    EXPECT_EQ(d, id);
  }
  EXPECT_EQ(EncodeCacheId(7).size(), 8u);
}

TEST(CacheIdTest, RejectsWrongSize) {
  std::vector<uint8_t> meta = EncodeCacheId(99);
  int64_t d = 0;
  for (size_t n = 0; n < meta.size(); ++n) {
    std::vector<uint8_t> prefix(meta.begin(), meta.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_EQ(DecodeCacheId(prefix, &d).code(), LLM_FAILED) << n;
  }
  meta.push_back(0);
  EXPECT_EQ(DecodeCacheId(meta, &d).code(), LLM_FAILED);
}

// ---------------------------------------------------------------- transfer request

TEST(TransferRequestTest, RoundTrip) {
  TransferRequest m = SampleRequest();
  std::vector<uint8_t> meta = EncodeTransferRequest(m);
  EXPECT_EQ(meta.size(), 8 + 24 * m.segments.size());
  TransferRequest d;
  Result r = DecodeTransferRequest(meta, kSampleRequestBytes, &d);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(d.timeout_ms, m.timeout_ms);
  ASSERT_EQ(d.segments.size(), m.segments.size());
  for (size_t i = 0; i < m.segments.size(); ++i) {
    EXPECT_EQ(d.segments[i].region_id, m.segments[i].region_id) << i;
    EXPECT_EQ(d.segments[i].offset, m.segments[i].offset) << i;
    EXPECT_EQ(d.segments[i].length, m.segments[i].length) << i;
  }
}

TEST(TransferRequestTest, UnknownExpectedLengthSkipsTotalCheck) {
  TransferRequest d;
  EXPECT_TRUE(DecodeTransferRequest(EncodeTransferRequest(SampleRequest()), UINT64_MAX, &d).ok());
}

TEST(TransferRequestTest, RejectsTotalMismatch) {
  std::vector<uint8_t> meta = EncodeTransferRequest(SampleRequest());
  TransferRequest d;
  for (uint64_t expected : {uint64_t{0}, kSampleRequestBytes - 1, kSampleRequestBytes + 1}) {
    Result r = DecodeTransferRequest(meta, expected, &d);
    EXPECT_EQ(r.code(), LLM_FAILED) << expected;
    EXPECT_NE(r.message().find("add up to 129"), std::string::npos) << r.message();
  }
}

TEST(TransferRequestTest, RejectsZeroSegments) {
  TransferRequest m;
  m.timeout_ms = 5;
  TransferRequest d;
  EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), 0, &d).code(), LLM_FAILED);
  EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), UINT64_MAX, &d).code(), LLM_FAILED);
}

TEST(TransferRequestTest, RejectsCountNotMatchingBytes) {
  const std::vector<uint8_t> good = EncodeTransferRequest(SampleRequest());  // count 3
  for (uint32_t count : {1u, 2u, 4u, kMaxSegmentsPerRequest, kMaxSegmentsPerRequest + 1, UINT32_MAX}) {
    std::vector<uint8_t> meta = good;
    PutU32(meta.data() + 4, count);
    TransferRequest d;
    EXPECT_EQ(DecodeTransferRequest(meta, UINT64_MAX, &d).code(), LLM_FAILED) << "count " << count;
  }
}

TEST(TransferRequestTest, RejectsZeroLengthSegment) {
  for (size_t i = 0; i < 3; ++i) {
    TransferRequest m = SampleRequest();
    uint64_t expected = kSampleRequestBytes - m.segments[i].length;
    m.segments[i].length = 0;
    TransferRequest d;
    EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), expected, &d).code(), LLM_FAILED) << i;
  }
}

TEST(TransferRequestTest, RejectsLengthSumOverflow) {
  TransferRequest d;
  // Two lengths whose 64-bit sum wraps to a small number.
  TransferRequest m;
  m.segments = {{1, 0, 1ULL << 63}, {1, 0, 1ULL << 63}};
  EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), 0, &d).code(), LLM_FAILED);
  EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), UINT64_MAX, &d).code(), LLM_FAILED);

  m.segments = {{1, 0, UINT64_MAX}, {1, 0, 2}};  // wraps to 1
  EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), 1, &d).code(), LLM_FAILED);

  m.segments = {{1, 0, 16}, {1, 0, UINT64_MAX - 15}};  // wraps to 0
  EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), 0, &d).code(), LLM_FAILED);

  // Each within the per-request limit, the sum not.
  m.segments = {{1, 0, kMaxDataBytes / 2 + 1}, {2, 0, kMaxDataBytes / 2}};
  EXPECT_EQ(DecodeTransferRequest(EncodeTransferRequest(m), UINT64_MAX, &d).code(), LLM_FAILED);

  // Exactly at the limit is fine.
  m.segments = {{1, 0, kMaxDataBytes / 2}, {2, 0, kMaxDataBytes / 2}};
  Result r = DecodeTransferRequest(EncodeTransferRequest(m), kMaxDataBytes, &d);
  EXPECT_TRUE(r.ok()) << r.message();
}

TEST(TransferRequestTest, EveryTruncationFails) {
  const std::vector<uint8_t> full = EncodeTransferRequest(SampleRequest());
  for (uint64_t expected : {UINT64_MAX, kSampleRequestBytes}) {
    ExpectEveryPrefixRefused(full, [expected](const std::vector<uint8_t>& b) {
      TransferRequest d;
      return DecodeTransferRequest(b, expected, &d);
    });
  }
}

// ---------------------------------------------------------------- robustness

// Random corruption of valid encodings must never crash or read out of
// bounds; each decoder either accepts or fails with LLM_FAILED.
TEST(ProtocolFuzzTest, RandomMutationsFailCleanly) {
  std::mt19937 rng(12345);
  const std::vector<std::vector<uint8_t>> seeds = {
      EncodeHello(SampleHello()), EncodeHelloAck(SampleHelloAck()), EncodeCacheInfo(SampleCacheInfo()),
      EncodeTransferRequest(SampleRequest()), EncodeCacheId(3)};
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> meta = seeds[static_cast<size_t>(iter) % seeds.size()];
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips && !meta.empty(); ++f) meta[rng() % meta.size()] = static_cast<uint8_t>(rng());
    if (rng() % 4 == 0) meta.resize(rng() % (meta.size() + 1));
    Hello h;
    HelloAck a;
    CacheInfo c;
    TransferRequest t;
    int64_t id = 0;
    for (Result r : {DecodeHello(meta, &h), DecodeHelloAck(meta, &a), DecodeCacheInfo(meta, &c),
                     DecodeTransferRequest(meta, UINT64_MAX, &t), DecodeCacheId(meta, &id)}) {
      ASSERT_TRUE(r.ok() || r.code() == LLM_FAILED) << r.code();
    }
  }
}

TEST(TextTest, RoundTripAndCap) {
  EXPECT_EQ(DecodeText(EncodeText("hello")), "hello");
  EXPECT_EQ(DecodeText({}), "");
  EXPECT_EQ(DecodeText(EncodeText(std::string(5000, 'x'))).size(), 4096u);
}

}  // namespace
}  // namespace lldd
