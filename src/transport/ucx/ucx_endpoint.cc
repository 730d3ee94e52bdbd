#include "transport/ucx/ucx_endpoint.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>

#include "common/logging.h"
#include "common/wire.h"
#include "transport/ucx/ucx_keys.h"

namespace lldd {
namespace {

// Requests between the two endpoints of a link (CallPeer -> OnPeerCall).
enum : uint8_t {
  kGetKeys = 1,  // ids -> {id, base, length, packed rkey} each
  kRevoke = 2,   // ids -> (empty): forget these keys of mine
  kAddress = 3,  // my worker address -> yours (both ends then open their ucp_ep)
};
constexpr uint32_t kMaxWorkerAddressBytes = 1U << 16;

std::vector<uint8_t> EncodeAddressOp(const std::vector<uint8_t>& address) {
  WireWriter w;
  w.U8(kAddress);
  w.U32(static_cast<uint32_t>(address.size()));
  w.Bytes(address.data(), address.size());
  return std::move(w.buffer());
}

// `bytes` without its first `skip` bytes: u32 length, then the address.
bool DecodeAddress(const std::vector<uint8_t>& bytes, size_t skip, std::vector<uint8_t>* address) {
  if (bytes.size() < skip) return false;
  WireReader r(bytes.data() + skip, bytes.size() - skip);
  uint32_t len = r.U32();
  if (!r.ok() || len == 0 || len > kMaxWorkerAddressBytes || len != r.left()) return false;
  address->assign(bytes.end() - len, bytes.end());
  return true;
}
constexpr uint32_t kMaxIdsPerCall = 1U << 20;

// After a forced close UCX completes every request of the endpoint with an
// error; this bounds how long we wait for those callbacks (they normally
// run within the close itself or the next progress pass).
constexpr auto kForcedCloseGrace = std::chrono::seconds(5);

// The requests of one Read/Write: it returns once `pending` is zero.
// Callbacks run on the progress thread (under the worker mutex); the
// waiting API thread frees the state once pending reaches zero, after which
// no callback refers to it.
struct CallState {
  std::mutex mu;
  std::condition_variable cv;
  int pending = 0;
  ucs_status_t error = UCS_OK;
};

void OnRequestDone(void* request, ucs_status_t status, void* user_data) {
  auto* call = static_cast<CallState*>(user_data);
  ucp_request_free(request);
  std::lock_guard<std::mutex> lock(call->mu);
  if (status != UCS_OK && call->error == UCS_OK) call->error = status;
  if (--call->pending == 0) call->cv.notify_all();
}

void OnEpError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  (void)ep;
  // Only a flag: the endpoint closes the ucp_ep by force on its next call.
  static_cast<UcxEpSlot*>(arg)->status.store(status);
}

// Waits until the call's requests have all completed or `until` passes.
bool WaitCall(CallState* call, Deadline deadline) {
  std::unique_lock<std::mutex> lock(call->mu);
  if (deadline.RemainingMillis() == INT64_MAX) {
    call->cv.wait(lock, [&] { return call->pending == 0; });
    return true;
  }
  return call->cv.wait_until(lock, deadline.when(), [&] { return call->pending == 0; });
}

}  // namespace

UcxEndpoint::UcxEndpoint(std::shared_ptr<UcxWorker> worker, std::shared_ptr<LinkHandle> link, RegionTable* regions,
                         size_t slot)
    : worker_(std::move(worker)), link_(link), regions_(regions), slot_(slot) {}

UcxEndpoint::~UcxEndpoint() {
  // Nobody else holds us: no transfer is in flight.
  std::vector<ucp_rkey_h> keys;
  for (auto& [id, r] : cache_) keys.push_back(r.rkey);
  cache_.clear();
  std::lock_guard<std::mutex> lock(worker_->mutex());
  for (ucp_rkey_h k : keys) ucp_rkey_destroy(k);
  BreakLocked("endpoint destroyed");
}

Result UcxEndpoint::Open(const std::vector<uint8_t>& peer_worker_address) { return OpenOnce(peer_worker_address); }

Result UcxEndpoint::OpenOnce(const std::vector<uint8_t>& address) {
  std::lock_guard<std::mutex> lock(worker_->mutex());
  if (!peer_address_.empty()) return Result::Ok();  // opened already (by the peer's request, or ours)
  peer_address_ = address;
  Result r = OpenLocked();
  if (!r.ok()) {
    peer_address_.clear();
    return r;
  }
  std::lock_guard<std::mutex> state(state_mu_);  // nothing was open to break before
  broken_ = false;
  broken_reason_.clear();
  return r;
}

Result UcxEndpoint::ExchangeAddresses(Deadline deadline) {
  std::shared_ptr<LinkHandle> link = link_.lock();
  if (!link || link->closed()) return Result::LinkFailed("UCX: the link is gone");
  std::vector<uint8_t> reply, address;
  LDD_RETURN_IF_ERROR(link->CallPeer("ucx", EncodeAddressOp(worker_->address()), deadline, &reply)
                          .WithContext("UCX: exchanging worker addresses"));
  if (!DecodeAddress(reply, 0, &address)) return Result::LinkFailed("UCX: malformed worker address from the peer");
  return OpenOnce(address);
}

Result UcxEndpoint::OpenLocked() {
  UcxEpSlot* slot = worker_->NewEpSlot();
  ep_slot_ = slot;
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(peer_address_.data());
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = &OnEpError;
  params.err_handler.arg = slot;
  ucs_status_t st = ucp_ep_create(worker_->worker(), &params, &ep_);
  if (st != UCS_OK) {
    ep_ = nullptr;
    return Result::LinkFailed(Msg("UCX: ucp_ep_create to the peer's worker failed: ", UcxStatusText(st)));
  }
  return Result::Ok();
}

bool UcxEndpoint::broken() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return broken_;
}

int UcxEndpoint::reopened() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return reopened_;
}

size_t UcxEndpoint::cached_keys() const {
  std::shared_lock<std::shared_timed_mutex> lock(cache_mu_);
  return cache_.size();
}

void UcxEndpoint::BreakLocked(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (!broken_) {
      broken_ = true;
      broken_reason_ = reason;
    }
  }
  if (ep_ == nullptr) return;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  ucs_status_ptr_t req = ucp_ep_close_nbx(ep_, &param);
  // The close finishes on the progress thread; UCX frees the request then.
  if (UCS_PTR_IS_PTR(req)) ucp_request_free(req);
  ep_ = nullptr;
  worker_->Wake();
}

Result UcxEndpoint::Usable(Deadline deadline) {
  bool broken = false;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (closed_) return Result::LinkFailed("UCX path to the peer is closed");
    broken = broken_;
  }
  bool opened = false;
  {
    std::lock_guard<std::mutex> lock(worker_->mutex());
    opened = !peer_address_.empty();
  }
  if (!opened) LDD_RETURN_IF_ERROR(ExchangeAddresses(deadline));
  if (broken) return Reopen();
  UcxEpSlot* slot = ep_slot_.load();
  ucs_status_t peer = static_cast<ucs_status_t>(slot ? slot->status.load() : UCS_OK);
  if (peer != UCS_OK) {
    std::lock_guard<std::mutex> lock(worker_->mutex());
    BreakLocked(Msg("peer failed: ", UcxStatusText(peer)));
    return Result::LinkFailed(Msg("UCX path to the peer failed: ", UcxStatusText(peer)));
  }
  return Result::Ok();
}

Result UcxEndpoint::Reopen() {
  // Exclusive: no transfer of ours holds a key of the old ucp_ep.
  std::unique_lock<std::shared_timed_mutex> keys(cache_mu_);
  std::lock_guard<std::mutex> lock(worker_->mutex());
  std::string why;
  {
    std::lock_guard<std::mutex> state(state_mu_);
    if (closed_) return Result::LinkFailed("UCX path to the peer is closed");
    if (!broken_) return Result::Ok();  // another call reopened it
    why = broken_reason_;
  }
  for (auto& [id, r] : cache_) ucp_rkey_destroy(r.rkey);  // unpacked for the old ucp_ep
  cache_.clear();
  BreakLocked(why);  // closes the old ucp_ep if it is still open
  Result r = OpenLocked();
  if (!r.ok()) return r.WithContext(Msg("UCX path to the peer was broken (", why, ")"));
  std::lock_guard<std::mutex> state(state_mu_);
  broken_ = false;
  broken_reason_.clear();
  ++reopened_;
  LDD_LOG(Info) << "UCX: a fresh endpoint to the peer replaces one that broke (" << why << ")";
  return Result::Ok();
}

void UcxEndpoint::DestroyKeys(std::vector<ucp_rkey_h> keys) {
  if (keys.empty()) return;
  std::lock_guard<std::mutex> lock(worker_->mutex());
  for (ucp_rkey_h k : keys) ucp_rkey_destroy(k);
}

void UcxEndpoint::Close() {
  {
    std::lock_guard<std::mutex> state(state_mu_);
    closed_ = true;
  }
  {
    std::lock_guard<std::mutex> lock(worker_->mutex());
    // In-flight requests complete with an error now, so transfers return.
    BreakLocked("closed");
  }
  std::vector<ucp_rkey_h> keys;
  {
    std::unique_lock<std::shared_timed_mutex> lock(cache_mu_);
    for (auto& [id, r] : cache_) keys.push_back(r.rkey);
    cache_.clear();
  }
  DestroyKeys(std::move(keys));
}

Result UcxEndpoint::Prepare(const std::vector<uint64_t>& region_ids, Deadline deadline) {
  std::vector<uint64_t> missing;
  {
    std::shared_lock<std::shared_timed_mutex> lock(cache_mu_);
    for (uint64_t id : region_ids)
      if (cache_.count(id) == 0 && std::find(missing.begin(), missing.end(), id) == missing.end())
        missing.push_back(id);
  }
  if (missing.empty()) return Result::Ok();
  LDD_RETURN_IF_ERROR(Usable(deadline));
  std::shared_ptr<LinkHandle> link = link_.lock();
  if (!link || link->closed()) return Result::LinkFailed("UCX: the link is gone");
  std::vector<uint8_t> reply;
  LDD_RETURN_IF_ERROR(link->CallPeer("ucx", EncodeOpWithIds(kGetKeys, missing), deadline, &reply)
                          .WithContext("UCX: fetching the peer's remote keys"));
  std::vector<UcxKeyEntry> entries;
  LDD_RETURN_IF_ERROR(DecodeUcxKeyReply(reply, missing, &entries));
  std::vector<std::pair<uint64_t, RemoteRegion>> got;
  Result result = Result::Ok();
  {
    std::lock_guard<std::mutex> lock(worker_->mutex());
    for (const UcxKeyEntry& e : entries) {
      const uint64_t id = e.id;
      RemoteRegion rr;
      rr.base = e.base;
      rr.length = e.length;
      if (ep_ == nullptr) {
        result = Result::LinkFailed("UCX path to the peer is broken; re-link");
        break;
      }
      ucs_status_t st = ucp_ep_rkey_unpack(ep_, e.key.data(), &rr.rkey);
      if (st != UCS_OK) {
        result = Result::LinkFailed(Msg("UCX: ucp_ep_rkey_unpack for region ", id, " failed: ", UcxStatusText(st)));
        break;
      }
      got.emplace_back(id, rr);
    }
    if (!result.ok()) {
      for (auto& [id, rr] : got) ucp_rkey_destroy(rr.rkey);
      return result;
    }
  }
  std::vector<ucp_rkey_h> duplicates;
  {
    std::unique_lock<std::shared_timed_mutex> lock(cache_mu_);
    for (auto& [id, rr] : got)
      if (!cache_.emplace(id, rr).second) duplicates.push_back(rr.rkey);  // fetched by a concurrent call
  }
  DestroyKeys(std::move(duplicates));
  return Result::Ok();
}

Result UcxEndpoint::Revoke(const std::vector<uint64_t>& region_ids, Deadline deadline) {
  if (region_ids.empty()) return Result::Ok();
  std::shared_ptr<LinkHandle> link = link_.lock();
  if (!link || link->closed()) return Result::Ok();  // no peer left to reach them
  std::vector<uint8_t> reply;
  Result r = link->CallPeer("ucx", EncodeOpWithIds(kRevoke, region_ids), deadline, &reply);
  if (!r.ok()) {
    // The peer may still hold keys to memory about to be freed. With RDMA
    // the unmapping that follows invalidates them. Over UCX's emulated RMA
    // (tcp) our worker serves the peer's gets and puts without checking
    // keys, at the worker rather than per endpoint: closing ours makes the
    // peer's calls fail, but cannot stop all of a put already under way
    // (see the test WriteToAPeerThatClosedItsEndpointFails). That is one
    // reason auto picks UCX only with RDMA.
    std::lock_guard<std::mutex> lock(worker_->mutex());
    BreakLocked("the peer did not confirm a revocation");
  }
  return r.WithContext("UCX: revoking regions at the peer");
}

Result UcxEndpoint::OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) {
  if (!request.empty() && request[0] == kAddress) {
    // Reached only through the authenticated link: the peer may now have
    // our address, and we open our ucp_ep to it (so that closing ours can
    // cut it off, as after an unconfirmed revocation).
    std::vector<uint8_t> address;
    if (!DecodeAddress(request, 1, &address)) return Result::ParamInvalid("UCX: malformed worker address");
    LDD_RETURN_IF_ERROR(OpenOnce(address));
    WireWriter w;
    w.U32(static_cast<uint32_t>(worker_->address().size()));
    w.Bytes(worker_->address().data(), worker_->address().size());
    *reply = std::move(w.buffer());
    return Result::Ok();
  }
  WireReader r(request);
  uint8_t op = r.U8();
  uint32_t n = r.U32();
  if (!r.ok() || n > kMaxIdsPerCall || n > r.left() / 8) return Result::ParamInvalid("UCX: malformed peer request");
  std::vector<uint64_t> ids(n);
  for (auto& id : ids) id = r.U64();
  if (!r.done()) return Result::ParamInvalid("UCX: malformed peer request");
  reply->clear();
  if (op == kRevoke) {
    // Waits for our transfers that use these keys, then forgets them: the
    // peer may free the memory. The peer waits kRevokeConfirmMs for our
    // answer, so we wait at most kPeerRevokeWaitMs: half for the transfers
    // to end, then we close the ucp_ep by force (they fail at once) and
    // wait the other half.
    std::vector<ucp_rkey_h> keys;
    {
      const auto half = std::chrono::milliseconds(kPeerRevokeWaitMs / 2);
      std::unique_lock<std::shared_timed_mutex> lock(cache_mu_, half);
      if (!lock.owns_lock()) {
        {
          std::lock_guard<std::mutex> wl(worker_->mutex());
          BreakLocked("the peer revoked memory a transfer of ours still used");
        }
        worker_->Wake();
        if (!lock.try_lock_for(half))
          return Result::Failed("UCX: a transfer of ours still uses the revoked memory's keys");
      }
      for (uint64_t id : ids) {
        auto it = cache_.find(id);
        if (it == cache_.end()) continue;
        keys.push_back(it->second.rkey);
        cache_.erase(it);
      }
    }
    DestroyKeys(std::move(keys));
    return Result::Ok();
  }
  if (op != kGetKeys) return Result::ParamInvalid(Msg("UCX: unknown peer request ", int(op)));
  RegionLease lease;
  std::vector<Region> regions;
  LDD_RETURN_IF_ERROR(regions_->Describe(ids, &lease, &regions));
  std::vector<UcxKeyEntry> entries;
  for (const Region& region : regions) {
    std::shared_ptr<void> data = slot_ < region.transport_data.size() ? region.transport_data[slot_] : nullptr;
    if (!data)
      return Result::ParamInvalid(Msg("region ", region.id, " (", MemoryKindName(region.kind),
                                      ") is not registered with UCX"));
    const auto* d = static_cast<const UcxRegionData*>(data.get());
    entries.push_back({region.id, d->base, d->length, d->rkey});
  }
  *reply = EncodeUcxKeyReply(entries);
  return Result::Ok();
}

Result UcxEndpoint::Read(const std::vector<IoOp>& ops, Deadline deadline) { return Transfer(ops, deadline, false); }

Result UcxEndpoint::Write(const std::vector<IoOp>& ops, Deadline deadline) { return Transfer(ops, deadline, true); }

Result UcxEndpoint::Transfer(const std::vector<IoOp>& ops, Deadline deadline, bool put) {
  const char* what = put ? "write" : "read";
  if (ops.empty()) return Result::Ok();
  LDD_RETURN_IF_ERROR(Usable(deadline));
  std::vector<uint64_t> ids;
  for (const IoOp& op : ops)
    if (ids.empty() || ids.back() != op.region_id) ids.push_back(op.region_id);
  LDD_RETURN_IF_ERROR(Prepare(ids, deadline));

  std::shared_lock<std::shared_timed_mutex> keys_in_use(cache_mu_);
  struct Posted {
    void* local;
    uint64_t length;
    uint64_t remote;
    ucp_rkey_h rkey;
  };
  std::vector<Posted> posts;
  posts.reserve(ops.size());
  const RemoteRegion* last = nullptr;
  uint64_t last_id = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const IoOp& op = ops[i];
    if (last == nullptr || last_id != op.region_id) {
      auto it = cache_.find(op.region_id);
      if (it == cache_.end())
        return Result::CacheNotExist(Msg("memory region ", op.region_id, " of the peer is gone (revoked)"));
      last = &it->second;
      last_id = op.region_id;
    }
    if (op.remote_offset > last->length || op.length > last->length - op.remote_offset)
      return Result::ParamInvalid(Msg("op ", i, " [", op.remote_offset, ", +", op.length,
                                      ") lies outside the peer's region ", op.region_id, " of ", last->length,
                                      " bytes"));
    if (op.length == 0) continue;
    posts.push_back({op.local, op.length, last->base + op.remote_offset, last->rkey});
  }
  if (posts.empty()) return Result::Ok();

  auto* call = new CallState;
  ucs_status_t post_error = UCS_OK;
  worker_->BeginBusy();
  {
    std::lock_guard<std::mutex> lock(worker_->mutex());
    if (ep_ == nullptr) {
      post_error = UCS_ERR_NOT_CONNECTED;
    } else {
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      param.cb.send = &OnRequestDone;
      param.user_data = call;
      // No callback runs while we hold the worker mutex, so counting
      // pending requests as we post races with nothing.
      auto track = [&](ucs_status_ptr_t req) {
        if (UCS_PTR_IS_ERR(req)) {
          post_error = UCS_PTR_STATUS(req);
        } else if (req != nullptr) {
          std::lock_guard<std::mutex> cl(call->mu);
          ++call->pending;
        }
      };
      for (const Posted& p : posts) {
        track(put ? ucp_put_nbx(ep_, p.local, p.length, p.remote, p.rkey, &param)
                  : ucp_get_nbx(ep_, p.local, p.length, p.remote, p.rkey, &param));
        if (post_error != UCS_OK) break;
      }
      // Puts complete locally (the source may be reused); the flush
      // completes once they landed at the peer. Gets complete when the
      // bytes are here.
      if (put && post_error == UCS_OK) track(ucp_ep_flush_nbx(ep_, &param));
      if (post_error != UCS_OK) BreakLocked(Msg("posting a ", what, " failed: ", UcxStatusText(post_error)));
    }
  }
  worker_->Wake();

  bool done = WaitCall(call, deadline);
  Result result = Result::Ok();
  if (!done) {
    // The deadline passed with requests in flight, and UCX cannot cancel a
    // get or put in flight. Why no late byte can land in the caller's
    // memory once we return:
    //  1. The ucp_ep is closed by force (below, under the worker mutex, so
    //     no progress runs meanwhile). UCX then completes every request of
    //     that endpoint with an error (UCS_ERR_CANCELED) and destroys its
    //     transport endpoints: for tcp/shared memory no later progress call
    //     can copy bytes for it (the copying is done by progress, on our
    //     thread, for a live endpoint only); for RDMA the queue pairs are
    //     destroyed, so the NIC stops writing for them.
    //  2. We return only after the callback of every request of this call
    //     ran, i.e. once UCX has let go of all of them and of our buffers.
    // If the callbacks do not come within a grace period (a UCX bug), the
    // call state is leaked on purpose and the failure says so.
    {
      std::lock_guard<std::mutex> lock(worker_->mutex());
      BreakLocked(Msg("a ", what, " passed its deadline; the endpoint was closed by force"));
    }
    worker_->Wake();
    bool drained = WaitCall(call, Deadline::AfterMillis(
                                      std::chrono::duration_cast<std::chrono::milliseconds>(kForcedCloseGrace).count()));
    worker_->EndBusy();
    if (!drained) {
      LDD_LOG(Error) << "UCX: requests still pending after a forced close; leaking their state";
      return Result::Timeout(Msg("UCX ", what, " of ", posts.size(),
                                 " ranges timed out; UCX did not release its requests after a forced close"));
    }
    delete call;
    return Result::Timeout(Msg("UCX ", what, " of ", posts.size(), " ranges did not complete within the deadline; ",
                               "the endpoint was closed by force (re-link to use UCX again)"));
  }
  worker_->EndBusy();
  ucs_status_t error = post_error != UCS_OK ? post_error : call->error;
  delete call;
  if (error != UCS_OK) {
    ucs_status_t peer = static_cast<ucs_status_t>(ep_slot_.load()->status.load());
    std::lock_guard<std::mutex> lock(worker_->mutex());
    BreakLocked(Msg(what, " failed: ", UcxStatusText(error)));
    result = Result::LinkFailed(Msg("UCX ", what, " failed: ", UcxStatusText(error),
                                    peer != UCS_OK ? Msg(" (peer: ", UcxStatusText(peer), ")") : std::string()));
  }
  return result;
}

}  // namespace lldd
