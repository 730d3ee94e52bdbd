// The UCX transport: one-sided gets and puts with remote keys, over whatever
// UCX reaches (InfiniBand/RoCE verbs, and also its own tcp and shared-memory
// transports). See ucx_worker.h and ucx_endpoint.h.
//
// Connection info is the worker's packed address (exchanged over our own
// control channel: no UCX listener); region data is the packed rkey of
// every host region, mapped with ucp_mem_map when it is added.
#ifndef LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_TRANSPORT_H_
#define LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_TRANSPORT_H_

#include <memory>
#include <mutex>
#include <vector>

#include "transport/transport.h"
#include "transport/ucx/ucx_endpoint.h"
#include "transport/ucx/ucx_worker.h"

namespace lldd {

class UcxTransport : public Transport {
 public:
  ~UcxTransport() override { Stop(); }
  const char* name() const override { return "ucx"; }
  TransportCaps caps() const override;
  // Only with an RDMA transport among UCX's resources: over plain TCP our
  // own path is several times faster than UCX's tcp (issue 12).
  bool auto_eligible() const override;

  Result Start(const TransportConfig& config, RegionTable& regions, size_t slot) override;
  void Stop() override;
  Result LocalInfo(std::vector<uint8_t>* info) const override;
  Result CanReach(const std::vector<uint8_t>& peer_info) const override;
  Result OnRegionAdded(Region& region) override;
  void OnRegionRemoved(Region& region) override;
  // Over UCX's tcp, shared-memory and cma lanes remote keys are not
  // enforced: a peer that kept our address can write what it knew. (GPU
  // memory is not mapped for UCX.)
  bool RevokeNeedsPeer(uint32_t kind, bool allocated) const override {
    (void)allocated;
    return kind != kDeviceMemory;
  }
  Result Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                 std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) override;

  // For tests and logs.
  std::shared_ptr<UcxWorker> worker() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<UcxWorker> worker_;
  Result start_result_ = Result::Failed("UCX transport not started");
  RegionTable* regions_ = nullptr;
  size_t slot_ = 0;
  std::vector<std::weak_ptr<UcxEndpoint>> endpoints_;
};

std::unique_ptr<Transport> MakeUcxTransport();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_TRANSPORT_H_
