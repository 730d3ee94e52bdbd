// The cuda_ipc describe reply: how a peer says where each region we asked
// about lives and how to open it (a VMM fd, a legacy IPC handle, a host
// memfd, or nothing: the fallback path). It comes from the peer, so it is
// decoded as hostile bytes: every field is checked before anything is
// opened, and the offsets are checked again against what opening gives.
#ifndef LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_DESCRIBE_H_
#define LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_DESCRIBE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "gpu/gpu_api.h"

namespace lldd {

// How a peer shares one region.
enum class CudaShare : uint8_t {
  kNone = 0,    // not reachable here (user host memory): fallback
  kVmm = 1,     // fd of a VMM handle
  kIpc = 2,     // legacy IPC handle bytes
  kMemfd = 3,   // host memfd, mapped and registered with CUDA here
};

struct CudaRegionShare {
  uint64_t id = 0;
  CudaShare share = CudaShare::kNone;
  uint64_t length = 0;      // the region's
  std::string key;          // names the allocation (one import per key)
  uint64_t alloc_size = 0;  // the allocation's, as the peer says
  uint64_t offset = 0;      // the region's start in it
  GpuIpcHandle handle{};    // kIpc
  int32_t index = -1;       // kVmm, kMemfd: which descriptor of the ticket
};

struct CudaDescribeReply {
  std::vector<CudaRegionShare> regions;
  std::string ticket;  // redeemed for the descriptors; empty: none
};

constexpr size_t kMaxCudaShareKeyBytes = 256;

// u32 count; per region: u64 id, u8 share, u64 length, str key, u64
// allocation size, u64 offset, 64 handle bytes, i32 descriptor index; then
// str ticket.
std::vector<uint8_t> EncodeCudaDescribeReply(const CudaDescribeReply& reply);

// Accepts only exactly one entry per id asked for (none twice, none
// unasked), a known share, a region inside its allocation, a descriptor
// index for fd-backed shares, and nothing after the ticket; anything else
// is LLM_FAILED ("malformed cuda_ipc describe reply").
Result DecodeCudaDescribeReply(const std::vector<uint8_t>& bytes, const std::vector<uint64_t>& asked,
                               CudaDescribeReply* out);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_DESCRIBE_H_
