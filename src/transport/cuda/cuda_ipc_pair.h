// Two processes joined by the cuda_ipc transport without an engine: a
// SEQPACKET socketpair stands in for the link's control channel. The owner
// allocates a GPU cache (VMM) and serves the peer's calls; the puller opens
// it and moves blocks. Used by the cross-process test (fake GPU, fork) and
// by the benchmark rows (real GPU, a freshly spawned process).
#ifndef LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_IPC_PAIR_H_
#define LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_IPC_PAIR_H_

#include <memory>
#include <vector>

#include "gpu/gpu_api.h"
#include "memory/region_table.h"
#include "transport/cuda/cuda_transport.h"

namespace lldd {

// Owner process: allocates `regions` GPU regions of `bytes` each, fills
// byte i of region r with PairPattern(r, i), serves until the peer hangs up.
Result ServeCudaIpcOwner(GpuApi& api, int fd, int regions, uint64_t bytes);

inline uint8_t PairPattern(uint64_t region, uint64_t i) { return static_cast<uint8_t>(i * 131 + region * 7 + (i >> 12)); }

class CudaIpcPuller {
 public:
  explicit CudaIpcPuller(GpuApi& api) : api_(api), transport_(&api) {}
  ~CudaIpcPuller();
  Result Open(int fd);
  const std::vector<uint64_t>& remote_regions() const { return remote_; }
  uint64_t region_bytes() const { return region_bytes_; }
  Endpoint& endpoint() { return *endpoint_; }

 private:
  GpuApi& api_;
  RegionTable regions_;
  CudaTransport transport_;
  std::shared_ptr<LinkHandle> link_;
  std::shared_ptr<Endpoint> endpoint_;
  std::vector<uint64_t> remote_;
  uint64_t region_bytes_ = 0;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_IPC_PAIR_H_
