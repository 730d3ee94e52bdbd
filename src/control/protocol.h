// The wire protocol between two linked instances.
//
// Every message is a fixed 32-byte header, then `meta_len` bytes of
// metadata (decoded by the functions below, each bounds-checked), then
// `data_len` raw bytes (only READ responses and WRITE requests carry data,
// and it goes straight between tensors and the socket).
//
// Decoding never trusts a length: headers are checked for magic, version,
// type and limits before any allocation, and every list is checked against
// the bytes actually present. A frame that fails a check closes only the
// connection it came on.
#ifndef LLM_DATADIST_SRC_CONTROL_PROTOCOL_H_
#define LLM_DATADIST_SRC_CONTROL_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/segment.h"

namespace lldd {

constexpr uint32_t kFrameMagic = 0x3144444CU;  // "LDD1" little-endian
constexpr uint16_t kProtocolVersion = 2;
constexpr size_t kFrameHeaderBytes = 32;
constexpr uint32_t kMaxMetaBytes = 64U << 20;       // 64 MiB of segment lists
constexpr uint64_t kMaxDataBytes = 1ULL << 40;      // 1 TiB per request
constexpr uint32_t kMaxSegmentsPerRequest = (kMaxMetaBytes - 16) / 24;
constexpr uint32_t kMaxTensorsPerCache = 4096;
constexpr uint32_t kMaxShapeRank = 32;

enum class MsgType : uint16_t {
  kHello = 1,
  kHelloAck = 2,
  kCacheQuery = 3,
  kCacheInfo = 4,
  // The TCP data path's requests (transport/tcp), which share the framing.
  kRead = 5,
  kReadResp = 6,
  kWrite = 7,
  kWriteResp = 8,
  kUnlink = 9,
  kUnlinkAck = 10,
  // A transport's own request to its peer endpoint (TransportCall).
  kTransportCall = 11,
  kTransportReply = 12,
  // Link token authentication (control/link_auth.h).
  kAuthChallenge = 13,
  kAuthProof = 14,
  // A front end's own request to its peer front end (FrontEndCall below),
  // e.g. the HIXL API asking which memory its peer registered.
  kFrontEndCall = 15,
  kFrontEndReply = 16,
  kLast = 16,
};

struct FrameHeader {
  MsgType type = MsgType::kHello;
  uint64_t request_id = 0;
  uint32_t status = 0;  // an LLM_* code in responses
  uint32_t meta_len = 0;
  uint64_t data_len = 0;
};

void EncodeFrameHeader(const FrameHeader& h, uint8_t out[kFrameHeaderBytes]);
Result DecodeFrameHeader(const uint8_t in[kFrameHeaderBytes], FrameHeader* h);

// What a connection is for, declared in its HELLO.
enum class ConnKind : uint8_t {
  kControl = 1,  // small messages both ways; its loss ends the link
  kJoin = 2,     // joins a link's transport (Hello::transport), which owns it
};

constexpr size_t kMaxTransportName = 64;
constexpr size_t kMaxTransportInfo = 8192;
constexpr size_t kMaxTransportOffers = 16;

// A transport's name and its opaque connection info (transport/transport.h).
struct TransportOffer {
  std::string name;
  std::vector<uint8_t> info;
  bool operator==(const TransportOffer&) const = default;
};

struct Hello {
  ConnKind kind = ConnKind::kControl;
  uint64_t cluster_id = 0;
  uint64_t instance_id = 0;   // random per LlmDataDist: tells a restart from a duplicate
  int32_t role = 0;
  uint64_t link_id = 0;       // joins: which link they join
  uint64_t link_secret = 0;   // joins: proves they belong to it
  // Control: the requested backend ("auto" or a transport's name).
  // Join: the transport joined.
  std::string transport;
  std::vector<TransportOffer> offers;  // control: the transports this side can use
  std::vector<uint8_t> join_info;      // join: the transport's own bytes
  std::vector<uint8_t> auth_nonce;     // link token challenge (empty: none)
};

struct HelloAck {
  uint64_t cluster_id = 0;
  int32_t role = 0;
  uint64_t link_id = 0;
  uint64_t link_secret = 0;
  // The transports the link uses, best first, with the acceptor's info.
  std::vector<TransportOffer> transports;
  std::string error;  // why the link was refused
};

// TRANSPORT_CALL metadata: which transport, and its own bytes.
struct TransportCall {
  std::string transport;
  std::vector<uint8_t> body;
};

// FRONT_END_CALL metadata: which front end, and its own bytes. Encoded as
// a TransportCall (the same two fields).
using FrontEndCall = TransportCall;

struct RemoteDesc {
  uint32_t placement = 0;
  uint32_t memory_kind = 0;  // MemoryKind of its tensors (memory/memory_kind.h)
  uint32_t num_tensors = 0;
  int32_t data_type = 0;
  std::vector<int64_t> shape;
  uint64_t tensor_bytes = 0;
  std::vector<uint64_t> region_ids;  // one per tensor
};

struct CacheInfo {
  int64_t cache_id = 0;
  RemoteDesc desc;
};

struct TransferRequest {
  uint32_t timeout_ms = 0;
  std::vector<Segment> segments;
};

std::vector<uint8_t> EncodeHello(const Hello& m);
Result DecodeHello(const std::vector<uint8_t>& meta, Hello* m);
std::vector<uint8_t> EncodeHelloAck(const HelloAck& m);
Result DecodeHelloAck(const std::vector<uint8_t>& meta, HelloAck* m);
std::vector<uint8_t> EncodeTransportCall(const TransportCall& m);
Result DecodeTransportCall(const std::vector<uint8_t>& meta, TransportCall* m);
std::vector<uint8_t> EncodeCacheInfo(const CacheInfo& m);
Result DecodeCacheInfo(const std::vector<uint8_t>& meta, CacheInfo* m);
std::vector<uint8_t> EncodeCacheId(int64_t cache_id);
Result DecodeCacheId(const std::vector<uint8_t>& meta, int64_t* cache_id);
std::vector<uint8_t> EncodeTransferRequest(const TransferRequest& m);
// Also checks that no segment is empty and that the lengths add up to
// `expected_data_len` without overflow.
Result DecodeTransferRequest(const std::vector<uint8_t>& meta, uint64_t expected_data_len, TransferRequest* m);
std::vector<uint8_t> EncodeText(const std::string& text);
std::string DecodeText(const std::vector<uint8_t>& meta);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_CONTROL_PROTOCOL_H_
