#include "control/protocol.h"

#include "common/wire.h"

namespace lldd {

void EncodeFrameHeader(const FrameHeader& h, uint8_t out[kFrameHeaderBytes]) {
  WireWriter w;
  w.U32(kFrameMagic);
  w.U16(kProtocolVersion);
  w.U16(static_cast<uint16_t>(h.type));
  w.U64(h.request_id);
  w.U32(h.status);
  w.U32(h.meta_len);
  w.U64(h.data_len);
  std::memcpy(out, w.buffer().data(), kFrameHeaderBytes);
}

Result DecodeFrameHeader(const uint8_t in[kFrameHeaderBytes], FrameHeader* h) {
  WireReader r(in, kFrameHeaderBytes);
  uint32_t magic = r.U32();
  uint16_t version = r.U16();
  uint16_t type = r.U16();
  h->request_id = r.U64();
  h->status = r.U32();
  h->meta_len = r.U32();
  h->data_len = r.U64();
  if (magic != kFrameMagic) return Result::Failed(Msg("bad frame magic 0x", std::hex, magic));
  if (version != kProtocolVersion)
    return Result::Failed(Msg("peer speaks protocol version ", version, ", this library speaks ", kProtocolVersion));
  if (type == 0 || type > static_cast<uint16_t>(MsgType::kLast)) return Result::Failed(Msg("unknown frame type ", type));
  if (h->meta_len > kMaxMetaBytes) return Result::Failed(Msg("frame metadata of ", h->meta_len, " bytes is too large"));
  if (h->data_len > kMaxDataBytes) return Result::Failed(Msg("frame data of ", h->data_len, " bytes is too large"));
  h->type = static_cast<MsgType>(type);
  bool carries_data = h->type == MsgType::kReadResp || h->type == MsgType::kWrite;
  if (!carries_data && h->data_len != 0) return Result::Failed(Msg("frame type ", type, " may not carry data"));
  return Result::Ok();
}

namespace {

void PutBytes(WireWriter& w, const std::vector<uint8_t>& b) {
  w.U32(static_cast<uint32_t>(b.size()));
  w.Bytes(b.data(), b.size());
}

std::vector<uint8_t> GetBytes(WireReader& r, size_t max) {
  std::string s = r.Str(max);
  return {s.begin(), s.end()};
}

Result Malformed(const char* what) { return Result::Failed(Msg("malformed ", what, " message")); }

}  // namespace

namespace {

void PutOffers(WireWriter& w, const std::vector<TransportOffer>& offers) {
  w.U32(static_cast<uint32_t>(offers.size()));
  for (const auto& o : offers) {
    w.Str(o.name);
    PutBytes(w, o.info);
  }
}

bool GetOffers(WireReader& r, std::vector<TransportOffer>* offers) {
  uint32_t n = r.U32();
  if (!r.ok() || n > kMaxTransportOffers) return false;
  offers->resize(n);
  for (auto& o : *offers) {
    o.name = r.Str(kMaxTransportName);
    o.info = GetBytes(r, kMaxTransportInfo);
  }
  return r.ok();
}

}  // namespace

std::vector<uint8_t> EncodeHello(const Hello& m) {
  WireWriter w;
  w.U8(static_cast<uint8_t>(m.kind));
  w.U64(m.cluster_id);
  w.U64(m.instance_id);
  w.I32(m.role);
  w.U64(m.link_id);
  w.U64(m.link_secret);
  w.Str(m.transport);
  PutOffers(w, m.offers);
  PutBytes(w, m.join_info);
  PutBytes(w, m.auth_nonce);
  return std::move(w.buffer());
}

Result DecodeHello(const std::vector<uint8_t>& meta, Hello* m) {
  WireReader r(meta);
  uint8_t kind = r.U8();
  m->cluster_id = r.U64();
  m->instance_id = r.U64();
  m->role = r.I32();
  m->link_id = r.U64();
  m->link_secret = r.U64();
  m->transport = r.Str(kMaxTransportName);
  if (!GetOffers(r, &m->offers)) return Malformed("HELLO");
  m->join_info = GetBytes(r, kMaxTransportInfo);
  m->auth_nonce = GetBytes(r, 64);
  if (!r.done()) return Malformed("HELLO");
  if (kind < 1 || kind > 2) return Result::Failed(Msg("unknown connection kind ", int{kind}));
  m->kind = static_cast<ConnKind>(kind);
  return Result::Ok();
}

std::vector<uint8_t> EncodeHelloAck(const HelloAck& m) {
  WireWriter w;
  w.U64(m.cluster_id);
  w.I32(m.role);
  w.U64(m.link_id);
  w.U64(m.link_secret);
  PutOffers(w, m.transports);
  w.Str(m.error);
  return std::move(w.buffer());
}

Result DecodeHelloAck(const std::vector<uint8_t>& meta, HelloAck* m) {
  WireReader r(meta);
  m->cluster_id = r.U64();
  m->role = r.I32();
  m->link_id = r.U64();
  m->link_secret = r.U64();
  if (!GetOffers(r, &m->transports)) return Malformed("HELLO_ACK");
  m->error = r.Str(4096);
  return r.done() ? Result::Ok() : Malformed("HELLO_ACK");
}

std::vector<uint8_t> EncodeTransportCall(const TransportCall& m) {
  WireWriter w;
  w.Str(m.transport);
  PutBytes(w, m.body);
  return std::move(w.buffer());
}

Result DecodeTransportCall(const std::vector<uint8_t>& meta, TransportCall* m) {
  WireReader r(meta);
  m->transport = r.Str(kMaxTransportName);
  m->body = GetBytes(r, 1U << 20);
  return r.done() ? Result::Ok() : Malformed("TRANSPORT_CALL");
}

std::vector<uint8_t> EncodeCacheInfo(const CacheInfo& m) {
  WireWriter w;
  w.I64(m.cache_id);
  w.U32(m.desc.placement);
  w.U32(m.desc.memory_kind);
  w.U32(m.desc.num_tensors);
  w.I32(m.desc.data_type);
  w.U32(static_cast<uint32_t>(m.desc.shape.size()));
  for (int64_t d : m.desc.shape) w.I64(d);
  w.U64(m.desc.tensor_bytes);
  for (uint64_t id : m.desc.region_ids) w.U64(id);
  return std::move(w.buffer());
}

Result DecodeCacheInfo(const std::vector<uint8_t>& meta, CacheInfo* m) {
  WireReader r(meta);
  m->cache_id = r.I64();
  m->desc.placement = r.U32();
  m->desc.memory_kind = r.U32();
  m->desc.num_tensors = r.U32();
  m->desc.data_type = r.I32();
  uint32_t rank = r.U32();
  if (!r.ok() || rank == 0 || rank > kMaxShapeRank || m->desc.num_tensors == 0 ||
      m->desc.num_tensors > kMaxTensorsPerCache)
    return Malformed("CACHE_INFO");
  m->desc.shape.resize(rank);
  for (auto& d : m->desc.shape) {
    d = r.I64();
    if (d <= 0) r.Fail();
  }
  m->desc.tensor_bytes = r.U64();
  if (!r.ok() || r.left() != size_t{m->desc.num_tensors} * 8) return Malformed("CACHE_INFO");
  m->desc.region_ids.resize(m->desc.num_tensors);
  for (auto& id : m->desc.region_ids) id = r.U64();
  return r.done() ? Result::Ok() : Malformed("CACHE_INFO");
}

std::vector<uint8_t> EncodeCacheId(int64_t cache_id) {
  WireWriter w;
  w.I64(cache_id);
  return std::move(w.buffer());
}

Result DecodeCacheId(const std::vector<uint8_t>& meta, int64_t* cache_id) {
  WireReader r(meta);
  *cache_id = r.I64();
  return r.done() ? Result::Ok() : Malformed("cache id");
}

std::vector<uint8_t> EncodeTransferRequest(const TransferRequest& m) {
  WireWriter w;
  w.buffer().reserve(8 + m.segments.size() * 24);
  w.U32(m.timeout_ms);
  w.U32(static_cast<uint32_t>(m.segments.size()));
  for (const auto& s : m.segments) {
    w.U64(s.region_id);
    w.U64(s.offset);
    w.U64(s.length);
  }
  return std::move(w.buffer());
}

Result DecodeTransferRequest(const std::vector<uint8_t>& meta, uint64_t expected_data_len, TransferRequest* m) {
  WireReader r(meta);
  m->timeout_ms = r.U32();
  uint32_t count = r.U32();
  if (!r.ok() || count == 0 || count > kMaxSegmentsPerRequest || r.left() != size_t{count} * 24)
    return Malformed("transfer request");
  m->segments.resize(count);
  uint64_t total = 0;
  for (auto& s : m->segments) {
    s.region_id = r.U64();
    s.offset = r.U64();
    s.length = r.U64();
    if (s.length == 0 || s.length > kMaxDataBytes - total) return Malformed("transfer request");
    total += s.length;
  }
  if (!r.done()) return Malformed("transfer request");
  if (expected_data_len != UINT64_MAX && total != expected_data_len)
    return Result::Failed(Msg("transfer request segments add up to ", total, " bytes, frame says ", expected_data_len));
  return Result::Ok();
}

std::vector<uint8_t> EncodeText(const std::string& text) { return {text.begin(), text.end()}; }
std::string DecodeText(const std::vector<uint8_t>& meta) {
  return std::string(meta.begin(), meta.begin() + static_cast<ptrdiff_t>(std::min<size_t>(meta.size(), 4096)));
}

}  // namespace lldd
