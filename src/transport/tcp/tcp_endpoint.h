// The TCP data path, requesting side.
//
// A transfer becomes one READ or WRITE request per connection used: the
// planned ranges are cut into stripes of about equal bytes, one per pooled
// connection, driven by up to one thread per stripe (common/worker_pool.h),
// so that a large transfer uses several cores. Bytes go straight between
// the tensors and the socket (sendmsg/recvmsg over the ranges); nothing is
// staged.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_ENDPOINT_H_
#define LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_ENDPOINT_H_

#include <atomic>
#include <memory>

#include "memory/region_table.h"
#include "transport/endpoint.h"
#include "transport/transport.h"
#include "transport/tcp/connection_pool.h"

namespace lldd {

class DeviceStagedTransfer;

// Whether `link` may serve one more data connection, whichever side opens
// it: a linked peer gets what its pool of `width` can use, twice over for
// bursts, and a little slack, not a serving thread per connection it asks
// for. LLM_LINK_BUSY otherwise (a pool waits that out: ConnectionPool).
Result AdmitDataConnection(const LinkHandle& link, size_t width);

class TcpEndpoint : public Endpoint {
 public:
  // Requests smaller than this use a single connection: striping small
  // transfers costs more in wake-ups than it gains.
  static constexpr uint64_t kMinStripeBytes = 1ULL << 20;
  // The one request a peer endpoint sends us (CallPeer): dial a reverse
  // connection into its pool.
  static constexpr uint8_t kOpenReverse = 1;

  TcpEndpoint(std::shared_ptr<ConnectionPool> pool, const std::shared_ptr<LinkHandle>& link, RegionTable& regions,
              int device_id = 0);
  ~TcpEndpoint() override;
  // Local GPU memory in a transfer goes through pinned slabs from then on.
  void EnableDeviceStaging(std::unique_ptr<DeviceStagedTransfer> staging) { staging_ = std::move(staging); }
  const char* name() const override { return "tcp"; }
  Result Read(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, false, deadline, {}); }
  Result Write(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, true, deadline, {}); }
  // Local GPU memory is copied to and from slabs by the GPU: `hold` stays
  // with a copy that outlives the call.
  Result ReadHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) override {
    return Transfer(ops, false, deadline, std::move(hold));
  }
  Result WriteHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) override {
    return Transfer(ops, true, deadline, std::move(hold));
  }
  Result OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) override;
  void Close() override { pool_->Close(); }

  // A reverse connection the peer dialed at our request.
  void OfferConnection(SocketPtr socket, uint64_t dial_id) { pool_->Offer(std::move(socket), dial_id); }

 private:
  Result Transfer(const std::vector<IoOp>& ops, bool is_write, Deadline deadline, std::shared_ptr<const void> hold);
  Result TransferHost(const std::vector<IoOp>& ops, bool is_write, Deadline deadline);
  std::shared_ptr<ConnectionPool> pool_;
  std::unique_ptr<DeviceStagedTransfer> staging_;
  std::weak_ptr<LinkHandle> link_;
  RegionTable& regions_;
  const int device_id_;
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<size_t> active_{0};  // transfers in progress
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_ENDPOINT_H_
