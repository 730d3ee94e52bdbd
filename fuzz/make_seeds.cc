// Writes the seed corpora of the fuzz targets: valid encodings made by the
// library's own encoders (so they follow the protocol as it is), plus a few
// near-misses that the server must refuse.
//
//   build-fuzz/fuzz/fuzz_make_seeds fuzz/corpus
//
// regenerates fuzz/corpus/<target>/ (checked in; rerun after a protocol
// change). Files are named after what they hold.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "control/link_auth.h"
#include "control/protocol.h"
#include "transport/shm/shm_messages.h"
#include "transport/cuda/cuda_describe.h"
#include "transport/ucx/ucx_keys.h"

namespace {

using namespace lldd;
using Bytes = std::vector<uint8_t>;

std::filesystem::path g_root;

void Write(const std::string& target, const std::string& name, const Bytes& bytes) {
  std::filesystem::path dir = g_root / target;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes Header(MsgType type, uint64_t request_id, uint32_t meta_len, uint64_t data_len, uint32_t status = 0) {
  FrameHeader h;
  h.type = type;
  h.request_id = request_id;
  h.status = status;
  h.meta_len = meta_len;
  h.data_len = data_len;
  Bytes out(kFrameHeaderBytes);
  EncodeFrameHeader(h, out.data());
  return out;
}

Bytes U64(uint64_t v) {
  Bytes out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
  return out;
}

// --- fuzz_protocol: selector byte + the encoding (see fuzz_protocol.cc).

void ProtocolSeeds() {
  const std::string t = "fuzz_protocol";
  auto seed = [&](const std::string& name, uint8_t selector, const Bytes& body) {
    Write(t, name, Cat({Bytes{selector}, body}));
  };
  seed("header_write", 0, Header(MsgType::kWrite, 7, 32, 4096));
  seed("header_read_resp", 0, Header(MsgType::kReadResp, 8, 0, 1 << 20, 0));
  seed("header_hello", 0, Header(MsgType::kHello, 1, 64, 0));

  Hello hello;
  hello.kind = ConnKind::kJoin;
  hello.cluster_id = 2;
  hello.role = 1;
  hello.instance_id = 0x3333;
  hello.link_id = 0x1111;
  hello.link_secret = 0x2222;
  hello.transport = "auto";
  hello.offers = {{"shm", {'h', 'o', 's', 't'}}, {"tcp", {}}};
  hello.join_info = {1};
  hello.auth_nonce = {1, 2, 3, 4};
  seed("hello", 1, EncodeHello(hello));
  seed("hello_empty", 1, EncodeHello(Hello{}));

  HelloAck ack;
  ack.cluster_id = 1;
  ack.link_id = 5;
  ack.link_secret = 6;
  ack.transports = {{"shm", {'l', 'l', 'd', 'd'}}, {"tcp", {}}};
  ack.error = "";
  seed("hello_ack", 2, EncodeHelloAck(ack));
  ack.error = "refused";
  seed("hello_ack_error", 2, EncodeHelloAck(ack));

  CacheInfo info;
  info.cache_id = 3;
  info.desc.placement = 0;
  info.desc.num_tensors = 2;
  info.desc.data_type = 3;
  info.desc.shape = {8, 16};
  info.desc.tensor_bytes = 512;
  info.desc.region_ids = {1, 2};
  seed("cache_info", 3, EncodeCacheInfo(info));

  seed("cache_id", 4, EncodeCacheId(42));

  TransferRequest req;
  req.timeout_ms = 1000;
  req.segments = {{1, 0, 64}, {2, 128, 64}};
  seed("transfer_request", 5, Cat({U64(128), EncodeTransferRequest(req)}));
  seed("transfer_request_mismatch", 5, Cat({U64(100), EncodeTransferRequest(req)}));
  req.segments = {{1, UINT64_MAX - 8, 16}};
  seed("transfer_request_wrap", 5, Cat({U64(16), EncodeTransferRequest(req)}));

  seed("shm_message_hello", 6, EncodeShmMessage(ShmMsg::kHello, 1, 0, EncodeShmHello({7, 8})));
  seed("shm_hello", 7, EncodeShmHello({7, 8}));
  seed("region_ids", 8, EncodeRegionIds({1, 2, 3}));

  ShmMapAnswer map;
  map.pid = 1234;
  map.entries.push_back({1, ShmAccess::kMemfd, 0, 9, 4096, 512, 8192});
  map.entries.push_back({2, ShmAccess::kCrossMemoryAttach, 0, 0, 0x7f0000001000, 512, 0});
  seed("shm_map_answer", 9, Cat({Bytes{2}, EncodeShmMapAnswer(map)}));
  seed("text", 10, EncodeText("memory region 3 is not registered"));
  seed("auth_challenge", 11, EncodeAuthChallenge({Bytes(32, 0x5A), Bytes(32, 0xC3)}));
}

// --- fuzz_data_server: a byte stream of frames. Regions 1 (250 bytes) and
// 2 (101 bytes) exist (see fuzz_data_server.cc).

Bytes Request(MsgType type, uint64_t id, const std::vector<Segment>& segments, uint64_t data_len, uint8_t fill = 0) {
  TransferRequest req;
  req.timeout_ms = 1000;
  req.segments = segments;
  Bytes meta = EncodeTransferRequest(req);
  Bytes out = Cat({Header(type, id, static_cast<uint32_t>(meta.size()), data_len), meta});
  out.insert(out.end(), data_len, fill);
  return out;
}

Bytes Read(uint64_t id, const std::vector<Segment>& segments) { return Request(MsgType::kRead, id, segments, 0); }

Bytes Write(uint64_t id, const std::vector<Segment>& segments, uint8_t fill) {
  uint64_t total = 0;
  for (const Segment& s : segments) total += s.length;
  return Request(MsgType::kWrite, id, segments, total, fill);
}

void DataServerSeeds() {
  const std::string t = "fuzz_data_server";
  Write(t, "read_whole_a", Read(1, {{1, 0, 250}}));
  Write(t, "read_segments", Read(2, {{1, 10, 20}, {2, 0, 101}, {1, 249, 1}}));
  Write(t, "write_b", Write(3, {{2, 5, 16}}, 0x11));
  Write(t, "write_then_read", Cat({Write(4, {{1, 0, 8}, {2, 93, 8}}, 0x22), Read(5, {{1, 0, 8}, {2, 93, 8}})}));
  Write(t, "unknown_region_then_read", Cat({Read(6, {{3, 0, 8}}), Read(7, {{1, 0, 8}})}));
  Write(t, "write_past_end_then_read", Cat({Write(8, {{2, 100, 2}}, 0x33), Read(9, {{2, 96, 5}})}));
  Write(t, "read_offset_wraps", Cat({Read(10, {{1, UINT64_MAX, 1}}), Read(11, {{2, 1, UINT64_MAX}})}));
  Write(t, "write_other_region_after_refusal",
        Cat({Write(12, {{1, 0, 4}, {9, 0, 4}}, 0x44), Write(13, {{2, 0, 4}}, 0x55)}));
  // data_len not matching the segments: malformed, the server hangs up.
  Bytes meta = EncodeTransferRequest({1000, {{1, 0, 16}}});
  Write(t, "write_len_mismatch", Cat({Header(MsgType::kWrite, 14, static_cast<uint32_t>(meta.size()), 8), meta,
                                      Bytes(8, 0x66)}));
  Write(t, "hello_on_data_connection", Header(MsgType::kHello, 15, 0, 0));
}

// --- fuzz_planner: FuzzedDataProvider input; arbitrary bytes do.

void PlannerSeeds() {
  std::mt19937 rng(12345);
  for (int i = 0; i < 8; ++i) {
    Bytes b(32 + 24 * i);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    Write("fuzz_planner", "random_" + std::to_string(i), b);
  }
  Write("fuzz_planner", "small_values", Bytes(128, 1));
  Write("fuzz_planner", "zeros", Bytes(128, 0));
}

// --- fuzz_ucx_keys: how many ids were asked (1..n), then the reply.
void UcxKeySeeds() {
  const std::string t = "fuzz_ucx_keys";
  auto seed = [&](const std::string& name, uint8_t asked, const std::vector<UcxKeyEntry>& entries) {
    Write(t, name, Cat({Bytes{asked}, EncodeUcxKeyReply(entries)}));
  };
  seed("none", 0, {});
  seed("one_key", 1, {{1, 4096, 64, Bytes(8, 0xAA)}});
  seed("two_keys_out_of_order", 2, {{2, 0x7f0000001000, 4096, Bytes(40, 1)}, {1, 0x7f0000100000, 1 << 20, Bytes(96, 2)}});
  seed("unasked_id", 1, {{5, 4096, 64, Bytes(8, 3)}});
  seed("range_wraps", 1, {{1, UINT64_MAX - 10, 64, Bytes(8, 4)}});
}

// --- fuzz_cuda_describe: how many ids were asked (1..n), then the reply.
void CudaDescribeSeeds() {
  const std::string t = "fuzz_cuda_describe";
  auto seed = [&](const std::string& name, uint8_t asked, const CudaDescribeReply& reply) {
    Write(t, name, Cat({Bytes{asked}, EncodeCudaDescribeReply(reply)}));
  };
  CudaRegionShare vmm{1, CudaShare::kVmm, 4096, "a1/77", 1 << 20, 8192, {}, 0};
  CudaRegionShare memfd{2, CudaShare::kMemfd, 65536, "a2/78", 1 << 20, 0, {}, 1};
  CudaRegionShare ipc{3, CudaShare::kIpc, 4096, "i00ff", 1 << 21, 4096, {}, -1};
  ipc.handle.fill(0x5A);
  CudaRegionShare none{4, CudaShare::kNone, 4096, "", 0, 0, {}, -1};
  seed("none", 0, {{}, ""});
  seed("vmm", 1, {{vmm}, "ticket-1"});
  seed("all_kinds", 4, {{ipc, none, memfd, vmm}, "ticket-2"});
  CudaRegionShare outside = vmm;
  outside.offset = (1 << 20) - 100;
  seed("outside_allocation", 1, {{outside}, "ticket-3"});
  CudaRegionShare unasked = vmm;
  unasked.id = 9;
  seed("unasked_id", 1, {{unasked}, "ticket-4"});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_ROOT (e.g. fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  ProtocolSeeds();
  DataServerSeeds();
  PlannerSeeds();
  UcxKeySeeds();
  CudaDescribeSeeds();
  return 0;
}
