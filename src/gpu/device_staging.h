// GPU memory over a byte stream (the TCP path, or any path that cannot
// reach GPU memory): bytes are staged through pinned host slabs, pipelined
// so that the copies between the GPU and the slabs overlap the network.
//
// Two pieces, one per side of a TCP transfer:
//
//  - DeviceStager: the serving side (data_server.cc). A READ whose resolved
//    ranges include GPU memory is sent with Produce() (the GPU gathers slab
//    k+1.. while slab k is on the wire); a WRITE is received with Consume()
//    (slab k is scattered into GPU memory while slab k+1 arrives). Host
//    ranges pass straight through, in order, unstaged.
//
//  - WrapWithDeviceStaging(): the requesting side. It wraps an Endpoint
//    (TCP's) so that local GPU addresses in an IoOp list are replaced by
//    windows of pinned slabs: a Read pulls window k over the inner endpoint
//    while the GPU scatters window k-1; a Write gathers ahead.
//
// Both use one GpuCopier launch per slab (gpu_copier.h), so thousands of
// small blocks still cost one kernel per slab.
#ifndef LLM_DATADIST_SRC_GPU_DEVICE_STAGING_H_
#define LLM_DATADIST_SRC_GPU_DEVICE_STAGING_H_

#include <sys/uio.h>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "gpu/gpu_api.h"
#include "gpu/gpu_copier.h"
#include "transport/endpoint.h"

namespace lldd {

struct StagingConfig {
  uint64_t slab_bytes = 8U << 20;
  int slabs = 3;  // in flight: one on the wire, the others in GPU copies
};

struct StagedRange {
  uint8_t* addr = nullptr;
  uint64_t length = 0;
  bool device = false;
};

// Pinned slabs; owned jointly by the stager and any copy still using them.
class PinnedSlabs;

class DeviceStager {
 public:
  // Moves host bytes: send or receive exactly these iovecs, in order.
  using Pipe = std::function<Result(const std::vector<iovec>&)>;

  DeviceStager(GpuApi& api, GpuCopier& copier, StagingConfig config = {});
  ~DeviceStager();
  DeviceStager(const DeviceStager&) = delete;
  DeviceStager& operator=(const DeviceStager&) = delete;

  // The bytes of `ranges`, in order, into `sink` (GPU ranges via slabs).
  Result Produce(const std::vector<StagedRange>& ranges, const Pipe& sink, Deadline deadline);
  // Fills `ranges`, in order, from `source` (GPU ranges via slabs).
  Result Consume(const std::vector<StagedRange>& ranges, const Pipe& source, Deadline deadline);

 private:
  Result EnsureSlabs();
  GpuApi& api_;
  GpuCopier& copier_;
  const StagingConfig config_;
  std::shared_ptr<PinnedSlabs> slabs_;
};

// Classifies ranges (GpuApi::PointerInfo, remembering the last allocation
// seen, so a list of blocks of one cache costs one query).
std::vector<StagedRange> ClassifyRanges(GpuApi& api, const std::vector<iovec>& iovs);

// The requesting side. `inner` moves host memory only (TCP). Returns an
// endpoint that also accepts local GPU addresses in IoOp::local.
std::shared_ptr<Endpoint> WrapWithDeviceStaging(std::shared_ptr<Endpoint> inner, GpuApi& api, int device,
                                                StagingConfig config = {});

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_GPU_DEVICE_STAGING_H_
