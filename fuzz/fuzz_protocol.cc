// Fuzz target: every wire decoder, fed hostile bytes.
//
// The first input byte picks the decoder, the rest is what it decodes.
// Besides "no crash, no sanitizer report", every message a decoder accepts
// must satisfy the decoder's documented invariants and re-encode to exactly
// the bytes it came from (the encodings are canonical), so a decoder that
// accepts something it misreads is caught too.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "control/link_auth.h"
#include "control/protocol.h"
#include "transport/shm/shm_messages.h"

namespace {

using namespace lldd;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "fuzz_protocol: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Fail(what);
}

uint64_t LoadU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

enum Decoder : uint8_t {
  kFrameHeader,
  kHello,
  kHelloAck,
  kCacheInfo,
  kCacheId,
  kTransferRequest,
  kShmMessage,
  kShmHello,
  kRegionIds,
  kShmMapAnswer,
  kText,
  kAuthChallenge,
  kDecoderCount,
};

void FuzzFrameHeader(const std::vector<uint8_t>& in) {
  if (in.size() < kFrameHeaderBytes) return;
  FrameHeader h;
  if (!DecodeFrameHeader(in.data(), &h).ok()) return;
  const auto type = static_cast<uint16_t>(h.type);
  Check(type >= 1 && type <= static_cast<uint16_t>(MsgType::kLast), "accepted unknown type");
  Check(h.meta_len <= kMaxMetaBytes, "accepted meta_len over the limit");
  Check(h.data_len <= kMaxDataBytes, "accepted data_len over the limit");
  Check(h.data_len == 0 || h.type == MsgType::kReadResp || h.type == MsgType::kWrite, "data on a dataless type");
  uint8_t out[kFrameHeaderBytes];
  EncodeFrameHeader(h, out);
  Check(std::memcmp(out, in.data(), kFrameHeaderBytes) == 0, "frame header does not round-trip");
}

void FuzzHello(const std::vector<uint8_t>& in) {
  Hello m;
  if (!DecodeHello(in, &m).ok()) return;
  const auto kind = static_cast<uint8_t>(m.kind);
  Check(kind >= 1 && kind <= 2, "accepted unknown connection kind");
  Check(m.transport.size() <= kMaxTransportName && m.offers.size() <= kMaxTransportOffers &&
            m.join_info.size() <= kMaxTransportInfo && m.auth_nonce.size() <= 64,
        "overlong field");
  Check(EncodeHello(m) == in, "HELLO does not round-trip");
}

void FuzzHelloAck(const std::vector<uint8_t>& in) {
  HelloAck m;
  if (!DecodeHelloAck(in, &m).ok()) return;
  Check(m.transports.size() <= kMaxTransportOffers && m.error.size() <= 4096, "overlong field");
  Check(EncodeHelloAck(m) == in, "HELLO_ACK does not round-trip");
}

void FuzzCacheInfo(const std::vector<uint8_t>& in) {
  CacheInfo m;
  if (!DecodeCacheInfo(in, &m).ok()) return;
  const RemoteDesc& d = m.desc;
  Check(!d.shape.empty() && d.shape.size() <= kMaxShapeRank, "accepted bad rank");
  for (int64_t dim : d.shape) Check(dim > 0, "accepted non-positive dimension");
  Check(d.num_tensors >= 1 && d.num_tensors <= kMaxTensorsPerCache, "accepted bad tensor count");
  Check(d.region_ids.size() == d.num_tensors, "region ids do not match the tensor count");
  Check(EncodeCacheInfo(m) == in, "CACHE_INFO does not round-trip");
}

void FuzzCacheId(const std::vector<uint8_t>& in) {
  int64_t id = 0;
  if (!DecodeCacheId(in, &id).ok()) return;
  Check(EncodeCacheId(id) == in, "cache id does not round-trip");
}

void CheckTransferRequest(const std::vector<uint8_t>& in, const TransferRequest& m, uint64_t expected) {
  Check(!m.segments.empty() && m.segments.size() <= kMaxSegmentsPerRequest, "accepted bad segment count");
  uint64_t total = 0;
  for (const Segment& s : m.segments) {
    Check(s.length > 0, "accepted an empty segment");
    Check(s.length <= kMaxDataBytes - total, "segment lengths overflow the data limit");
    total += s.length;
  }
  Check(expected == UINT64_MAX || total == expected, "segment lengths do not add up to data_len");
  Check(EncodeTransferRequest(m) == in, "transfer request does not round-trip");
}

void FuzzTransferRequest(const std::vector<uint8_t>& in) {
  // The first 8 bytes are the frame's data_len; the rest is the metadata.
  if (in.size() < 8) return;
  const uint64_t expected = LoadU64(in.data());
  const std::vector<uint8_t> meta(in.begin() + 8, in.end());
  TransferRequest m;
  if (DecodeTransferRequest(meta, expected, &m).ok()) CheckTransferRequest(meta, m, expected);
  TransferRequest any;  // a READ: no data_len to match
  if (DecodeTransferRequest(meta, UINT64_MAX, &any).ok()) CheckTransferRequest(meta, any, UINT64_MAX);
}

void FuzzShmMessage(const std::vector<uint8_t>& in) {
  ShmHeader h;
  std::vector<uint8_t> meta;
  if (!DecodeShmMessage(in, &h, &meta).ok()) return;
  Check(meta.size() + 18 == in.size(), "shm message length mismatch accepted");
  Check(EncodeShmMessage(h.type, h.request_id, h.status, meta) == in, "shm message does not round-trip");
}

void FuzzShmHello(const std::vector<uint8_t>& in) {
  ShmHello m;
  if (!DecodeShmHello(in, &m).ok()) return;
  Check(EncodeShmHello(m) == in, "SHM_HELLO does not round-trip");
}

void FuzzRegionIds(const std::vector<uint8_t>& in) {
  std::vector<uint64_t> ids;
  if (!DecodeRegionIds(in, &ids).ok()) return;
  Check(!ids.empty() && ids.size() <= kMaxRegionsPerShmMessage, "accepted bad region id count");
  Check(EncodeRegionIds(ids) == in, "region id list does not round-trip");
}

void FuzzShmMapAnswer(const std::vector<uint8_t>& in) {
  // The first byte is how many descriptors came with the message.
  if (in.empty()) return;
  const size_t fd_count = in[0] % 8;
  const std::vector<uint8_t> meta(in.begin() + 1, in.end());
  ShmMapAnswer m;
  if (!DecodeShmMapAnswer(meta, fd_count, &m).ok()) return;
  Check(m.entries.size() <= kMaxRegionsPerShmMessage, "accepted too many entries");
  for (const ShmRegionEntry& e : m.entries) {
    if (e.access == ShmAccess::kMemfd) {
      Check(e.fd_index < fd_count, "accepted an fd index without a descriptor");
      Check(e.offset_or_address <= e.memfd_size && e.length <= e.memfd_size - e.offset_or_address,
            "accepted a region outside its memfd");
    } else {
      Check(e.access == ShmAccess::kCrossMemoryAttach, "accepted an unknown access kind");
    }
  }
  Check(EncodeShmMapAnswer(m) == meta, "MAP answer does not round-trip");
}

void FuzzText(const std::vector<uint8_t>& in) {
  std::string s = DecodeText(in);
  Check(s.size() <= 4096 && s.size() <= in.size(), "text not capped");
  Check(s.empty() || std::memcmp(s.data(), in.data(), s.size()) == 0, "text altered");
}

void FuzzAuthChallenge(const std::vector<uint8_t>& in) {
  AuthChallenge m;
  if (!DecodeAuthChallenge(in, &m).ok()) return;
  Check(m.nonce.size() <= 64 && m.proof.size() <= 64, "overlong challenge field");
  Check(EncodeAuthChallenge(m) == in, "AUTH_CHALLENGE does not round-trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::vector<uint8_t> in(data + 1, data + size);
  switch (data[0] % kDecoderCount) {
    case kFrameHeader: FuzzFrameHeader(in); break;
    case kHello: FuzzHello(in); break;
    case kHelloAck: FuzzHelloAck(in); break;
    case kCacheInfo: FuzzCacheInfo(in); break;
    case kCacheId: FuzzCacheId(in); break;
    case kTransferRequest: FuzzTransferRequest(in); break;
    case kShmMessage: FuzzShmMessage(in); break;
    case kShmHello: FuzzShmHello(in); break;
    case kRegionIds: FuzzRegionIds(in); break;
    case kShmMapAnswer: FuzzShmMapAnswer(in); break;
    case kText: FuzzText(in); break;
    case kAuthChallenge: FuzzAuthChallenge(in); break;
    default: break;
  }
  return 0;
}
