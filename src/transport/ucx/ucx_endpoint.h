// One linked peer as seen through UCX: a ucp_ep to the peer's worker, and
// the remote keys of the peer's regions this side has learnt.
//
// Remote keys are fetched on demand (Prepare, or the first transfer naming
// a region) with LinkHandle::CallPeer; the peer's endpoint answers from its
// region table (OnPeerCall). So regions registered after the link work, and
// a region the peer removes is first revoked here (Revoke -> OnPeerCall):
// its key is dropped once no transfer of ours still uses it.
//
// Read/Write post one ucp_get_nbx/ucp_put_nbx per op (puts then one
// ucp_ep_flush_nbx, so success means the bytes landed) and wait for all of
// them as one completion. UCX cannot cancel a get or put in flight, so a
// passed deadline closes the ucp_ep by force; so does a revocation the peer
// did not confirm, or an error UCX reports for the peer. The endpoint is
// then broken, and its next call opens a fresh ucp_ep to the peer's worker
// (its keys fetched anew): a peer that is still there is reached again, one
// that is gone fails that call at once. Only Close() ends it for good.
#ifndef LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_ENDPOINT_H_
#define LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_ENDPOINT_H_

#include <ucp/api/ucp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "memory/region_table.h"
#include "transport/endpoint.h"
#include "transport/transport.h"
#include "transport/ucx/ucx_worker.h"

namespace lldd {

class UcxEndpoint : public Endpoint {
 public:
  UcxEndpoint(std::shared_ptr<UcxWorker> worker, std::shared_ptr<LinkHandle> link, RegionTable* regions,
              size_t slot);
  ~UcxEndpoint() override;

  // Creates the ucp_ep to the peer's worker (error handling mode PEER).
  // Without it, the first call exchanges the two workers' addresses over
  // the link (CallPeer, authenticated) and both ends open their ucp_ep:
  // a worker address is given only to a peer that passed the handshake.
  Result Open(const std::vector<uint8_t>& peer_worker_address);

  const char* name() const override { return "ucx"; }
  Result Prepare(const std::vector<uint64_t>& region_ids, Deadline deadline) override;
  Result Revoke(const std::vector<uint64_t>& region_ids, Deadline deadline) override;
  Result OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) override;
  Result Read(const std::vector<IoOp>& ops, Deadline deadline) override;
  Result Write(const std::vector<IoOp>& ops, Deadline deadline) override;
  void Close() override;

  bool broken() const;
  size_t cached_keys() const;
  // How many times a broken ucp_ep was replaced by a fresh one.
  int reopened() const;

 private:
  struct RemoteRegion {
    uint64_t base = 0;
    uint64_t length = 0;
    ucp_rkey_h rkey = nullptr;
  };

  Result Transfer(const std::vector<IoOp>& ops, Deadline deadline, bool put);
  // Fails if the endpoint is closed or its peer failed; opens the ucp_ep
  // on first use and replaces a broken one by a fresh one.
  Result Usable(Deadline deadline);
  // Exchanges worker addresses with the peer and opens the ucp_ep.
  Result ExchangeAddresses(Deadline deadline);
  // Opens the ucp_ep to `address` unless one was opened already.
  Result OpenOnce(const std::vector<uint8_t>& address);
  Result Reopen();
  // Under the worker mutex: creates ep_ to peer_address_.
  Result OpenLocked();
  // Under the worker mutex: closes the ucp_ep by force (if still open) and
  // marks the endpoint broken with `reason`.
  void BreakLocked(const std::string& reason);
  // Under cache_mu_ held exclusively: destroys the keys in `keys`.
  void DestroyKeys(std::vector<ucp_rkey_h> keys);

  std::shared_ptr<UcxWorker> worker_;
  std::weak_ptr<LinkHandle> link_;
  RegionTable* regions_;
  size_t slot_;

  // Guarded by the worker mutex.
  ucp_ep_h ep_ = nullptr;
  std::atomic<UcxEpSlot*> ep_slot_{nullptr};
  std::vector<uint8_t> peer_address_;  // empty until the ucp_ep is first opened

  mutable std::mutex state_mu_;
  bool broken_ = false;
  bool closed_ = false;
  int reopened_ = 0;
  std::string broken_reason_;

  // Transfers hold it shared from key lookup until every request of theirs
  // completed; fetching inserts and revoking erases keys holding it
  // exclusively, so no key is destroyed under a request that uses it.
  mutable std::shared_timed_mutex cache_mu_;
  std::unordered_map<uint64_t, RemoteRegion> cache_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_ENDPOINT_H_
