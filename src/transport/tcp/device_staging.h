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
//  - DeviceStagedTransfer: the requesting side (tcp_endpoint.cc). Local GPU
//    addresses in an IoOp list are replaced by windows of pinned slabs and
//    the host-only transfer is called per window: a Read pulls window k
//    while the GPU scatters window k-1; a Write gathers ahead.
//    WrapWithDeviceStaging() does the same around a whole Endpoint.
//
// Both use one GpuCopier launch per slab (gpu_copier.h), so thousands of
// small blocks still cost one kernel per slab.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TCP_DEVICE_STAGING_H_
#define LLM_DATADIST_SRC_TRANSPORT_TCP_DEVICE_STAGING_H_

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
  // With a copier of its own on `device` (one stager per serving thread).
  DeviceStager(GpuApi& api, int device, StagingConfig config = {});
  ~DeviceStager();
  DeviceStager(const DeviceStager&) = delete;
  DeviceStager& operator=(const DeviceStager&) = delete;

  // The bytes of `ranges`, in order, into `sink` (GPU ranges via slabs).
  // `hold` keeps the ranges' memory valid (their region lease): a GPU copy
  // that outlives the call keeps it until it ends.
  Result Produce(const std::vector<StagedRange>& ranges, const Pipe& sink, Deadline deadline,
                 std::shared_ptr<const void> hold = nullptr);
  // Fills `ranges`, in order, from `source` (GPU ranges via slabs).
  Result Consume(const std::vector<StagedRange>& ranges, const Pipe& source, Deadline deadline,
                 std::shared_ptr<const void> hold = nullptr);

 private:
  Result EnsureSlabs();
  std::vector<std::shared_ptr<const void>> Keep(std::shared_ptr<const void> hold) const;
  GpuApi& api_;
  std::unique_ptr<GpuCopier> own_copier_;
  GpuCopier& copier_;
  const StagingConfig config_;
  std::shared_ptr<PinnedSlabs> slabs_;
};

// The requesting side. Thread-safe; one per endpoint.
class DeviceStagedTransfer {
 public:
  // Moves host-only ops (`write`: push) within the deadline: the
  // endpoint's own transfer.
  using HostPath = std::function<Result(const std::vector<IoOp>& ops, bool write, Deadline deadline)>;

  DeviceStagedTransfer(GpuApi& api, int device, StagingConfig config = {});
  ~DeviceStagedTransfer();

  // Ops whose local side is GPU memory go through slabs; the others go to
  // `host` as they are (first, in one call). `hold` keeps the local memory
  // valid: a GPU copy that outlives the call keeps it until it ends.
  Result Transfer(const std::vector<IoOp>& ops, bool write, Deadline deadline, const HostPath& host,
                  std::shared_ptr<const void> hold = nullptr);
  // Cheap check (one pointer query per GPU allocation seen).
  bool AnyLocalDevice(const std::vector<IoOp>& ops);

 private:
  struct Window;
  Result TakeSlabs(std::shared_ptr<PinnedSlabs>* out);
  void GiveSlabs(std::shared_ptr<PinnedSlabs> slabs);
  Result Pull(const std::vector<Window>& windows, const PinnedSlabs& slabs,
              const std::vector<std::shared_ptr<const void>>& keep, Deadline deadline, const HostPath& host);
  Result Push(const std::vector<Window>& windows, const PinnedSlabs& slabs,
              const std::vector<std::shared_ptr<const void>>& keep, Deadline deadline, const HostPath& host);

  GpuApi& api_;
  GpuCopier copier_;
  const StagingConfig config_;
  std::mutex mu_;
  std::vector<std::shared_ptr<PinnedSlabs>> idle_;
};

// Classifies ranges (GpuApi::PointerInfo, remembering the last allocation
// seen, so a list of blocks of one cache costs one query).
std::vector<StagedRange> ClassifyRanges(GpuApi& api, const std::vector<iovec>& iovs);

// The requesting side. `inner` moves host memory only (TCP). Returns an
// endpoint that also accepts local GPU addresses in IoOp::local.
std::shared_ptr<Endpoint> WrapWithDeviceStaging(std::shared_ptr<Endpoint> inner, GpuApi& api, int device,
                                                StagingConfig config = {});

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_DEVICE_STAGING_H_
