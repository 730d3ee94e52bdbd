#include "transport/cuda/cuda_describe.h"

#include <set>

#include "common/wire.h"

namespace lldd {

std::vector<uint8_t> EncodeCudaDescribeReply(const CudaDescribeReply& reply) {
  WireWriter w;
  w.U32(static_cast<uint32_t>(reply.regions.size()));
  for (const CudaRegionShare& e : reply.regions) {
    w.U64(e.id);
    w.U8(static_cast<uint8_t>(e.share));
    w.U64(e.length);
    w.Str(e.key);
    w.U64(e.alloc_size);
    w.U64(e.offset);
    w.Bytes(e.handle.data(), e.handle.size());
    w.I32(e.index);
  }
  w.Str(reply.ticket);
  return std::move(w.buffer());
}

namespace {

bool WellFormed(const CudaRegionShare& e) {
  if (e.share > CudaShare::kMemfd) return false;
  if (e.share == CudaShare::kNone) return true;
  if (e.key.empty() || e.offset > e.alloc_size || e.length > e.alloc_size - e.offset) return false;
  const bool fd_backed = e.share == CudaShare::kVmm || e.share == CudaShare::kMemfd;
  return !fd_backed || e.index >= 0;
}

}  // namespace

Result DecodeCudaDescribeReply(const std::vector<uint8_t>& bytes, const std::vector<uint64_t>& asked,
                               CudaDescribeReply* out) {
  const Result malformed = Result::Failed("malformed cuda_ipc describe reply");
  WireReader r(bytes);
  const uint32_t n = r.U32();
  if (!r.ok() || n != asked.size()) return malformed;
  std::set<uint64_t> want(asked.begin(), asked.end());
  CudaDescribeReply reply;
  reply.regions.resize(n);
  for (CudaRegionShare& e : reply.regions) {
    e.id = r.U64();
    e.share = static_cast<CudaShare>(r.U8());
    e.length = r.U64();
    e.key = r.Str(kMaxCudaShareKeyBytes);
    e.alloc_size = r.U64();
    e.offset = r.U64();
    for (uint8_t& b : e.handle) b = r.U8();
    e.index = r.I32();
    if (!r.ok() || want.erase(e.id) != 1 || !WellFormed(e)) return malformed;
  }
  reply.ticket = r.Str();
  if (!r.done()) return malformed;
  *out = std::move(reply);
  return Result::Ok();
}

}  // namespace lldd
