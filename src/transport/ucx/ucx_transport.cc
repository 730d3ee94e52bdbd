#include "transport/ucx/ucx_transport.h"

#include <cstdlib>

#include <algorithm>

#include "common/logging.h"
#include "common/rdma_devices.h"
#include "common/wire.h"

namespace lldd {
namespace {

constexpr uint32_t kInfoMagic = 0x31584355;  // "UCX1"
constexpr uint32_t kMaxAddressBytes = 1U << 16;

Result ParseInfo(const std::vector<uint8_t>& info, std::vector<uint8_t>* address) {
  WireReader r(info);
  uint32_t magic = r.U32();
  uint32_t len = r.U32();
  if (!r.ok() || magic != kInfoMagic || len > kMaxAddressBytes || len != r.left())
    return Result::ParamInvalid("UCX: the peer's connection info is malformed");
  address->assign(info.end() - len, info.end());
  return Result::Ok();
}

}  // namespace

TransportCaps UcxTransport::caps() const {
  TransportCaps c;
  c.any_host = true;
  // Debian's UCX has no CUDA support; GPU caches go through pinned staging.
  c.local_memory = kAnyHostMemory;
  c.remote_memory = kAnyHostMemory;
  c.needs_peer_thread = false;
  return c;
}

bool UcxTransport::auto_eligible() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_ != nullptr && worker_->has_rdma();
}

std::shared_ptr<UcxWorker> UcxTransport::worker() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_;
}

Result UcxTransport::Start(const TransportConfig& config, RegionTable& regions, size_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  regions_ = &regions;
  slot_ = slot;
  // UCX maps (and with RDMA pins) every region and hooks the allocator: not
  // worth it where it cannot beat our own paths, unless asked for by name or
  // configured explicitly (UCX_TLS).
  if (config.backend != name() && !HasRdmaDevice() && std::getenv("UCX_TLS") == nullptr) {
    start_result_ = Result::FeatureNotEnabled(
        "no RDMA device here; UCX starts only with one, with UCX_TLS set, or when llm.TransferBackend=ucx");
    return start_result_;
  }
  start_result_ = UcxWorker::Create(&worker_);
  if (!start_result_.ok()) {
    worker_.reset();
    LDD_LOG(Warn) << "UCX transport unavailable: " << start_result_.message();
  }
  return start_result_;
}

void UcxTransport::Stop() {
  std::vector<std::weak_ptr<UcxEndpoint>> endpoints;
  std::shared_ptr<UcxWorker> worker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    endpoints.swap(endpoints_);
    worker.swap(worker_);
    start_result_ = Result::Failed("UCX transport stopped");
  }
  for (auto& weak : endpoints)
    if (auto ep = weak.lock()) ep->Close();
  // Regions still registered keep the context alive until they go.
  if (worker) worker->StopProgress();
}

Result UcxTransport::LocalInfo(std::vector<uint8_t>* info) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!worker_) return start_result_;
  // No address: the HELLO that carries this reaches a server that has not
  // yet proven the link token, and over UCX's tcp and shared-memory lanes
  // our worker address is access to all our memory (keys are not enforced
  // there). The endpoints exchange addresses over the link once it is
  // authenticated (UcxEndpoint). A peer's info that still carries an
  // address (an older version) is used as it is.
  WireWriter w;
  w.U32(kInfoMagic);
  w.U32(0);
  *info = std::move(w.buffer());
  return Result::Ok();
}

Result UcxTransport::CanReach(const std::vector<uint8_t>& peer_info) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!worker_) return start_result_;
  }
  std::vector<uint8_t> address;
  return ParseInfo(peer_info, &address);
}

Result UcxTransport::OnRegionAdded(Region& region) {
  std::shared_ptr<UcxWorker> worker = this->worker();
  if (!worker) return Result::Ok();  // not serving: other transports move it
  // GPU memory would need a CUDA-enabled UCX; empty regions cannot be mapped.
  if (region.kind == kDeviceMemory || region.length == 0) return Result::Ok();
  std::shared_ptr<UcxRegionData> data;
  LDD_RETURN_IF_ERROR(UcxMapRegion(worker, region.base, region.length, &data));
  if (region.transport_data.size() <= slot_) region.transport_data.resize(slot_ + 1);
  region.transport_data[slot_] = std::move(data);
  return Result::Ok();
}

void UcxTransport::OnRegionRemoved(Region& region) {
  // Unmaps once the last copy (a Describe in progress) lets go.
  if (slot_ < region.transport_data.size()) region.transport_data[slot_].reset();
}

Result UcxTransport::Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                             std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) {
  (void)fallback;
  (void)deadline;  // ucp_ep_create does not block; wire-up runs in progress
  std::vector<uint8_t> address;
  LDD_RETURN_IF_ERROR(ParseInfo(peer_info, &address));
  std::shared_ptr<UcxWorker> worker;
  RegionTable* regions;
  size_t slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!worker_) return start_result_;
    worker = worker_;
    regions = regions_;
    slot = slot_;
  }
  auto ep = std::make_shared<UcxEndpoint>(worker, link, regions, slot);
  if (!address.empty()) LDD_RETURN_IF_ERROR(ep->Open(address));
  {
    std::lock_guard<std::mutex> lock(mu_);
    endpoints_.erase(std::remove_if(endpoints_.begin(), endpoints_.end(),
                                    [](const std::weak_ptr<UcxEndpoint>& w) { return w.expired(); }),
                     endpoints_.end());
    endpoints_.push_back(ep);
  }
  *out = std::move(ep);
  return Result::Ok();
}

std::unique_ptr<Transport> MakeUcxTransport() { return std::make_unique<UcxTransport>(); }

}  // namespace lldd
