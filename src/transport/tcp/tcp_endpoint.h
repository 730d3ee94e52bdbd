// The TCP data path, requesting side.
//
// A transfer becomes one READ or WRITE request per connection used: the
// planned ranges are cut into stripes of about equal bytes, one per pooled
// connection, and all stripes progress together in one poll() loop. Bytes
// go straight between the tensors and the socket (sendmsg/recvmsg over the
// ranges); nothing is staged.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_ENDPOINT_H_
#define LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_ENDPOINT_H_

#include <atomic>
#include <memory>

#include "memory/region_table.h"
#include "transport/endpoint.h"
#include "transport/transport.h"
#include "transport/tcp/connection_pool.h"

namespace lldd {

class TcpEndpoint : public Endpoint {
 public:
  // Requests smaller than this use a single connection: striping small
  // transfers costs more in wake-ups than it gains.
  static constexpr uint64_t kMinStripeBytes = 1ULL << 20;
  // The one request a peer endpoint sends us (CallPeer): dial a reverse
  // connection into its pool.
  static constexpr uint8_t kOpenReverse = 1;

  TcpEndpoint(std::shared_ptr<ConnectionPool> pool, const std::shared_ptr<LinkHandle>& link, RegionTable& regions)
      : pool_(std::move(pool)), link_(link), regions_(regions) {}
  const char* name() const override { return "tcp"; }
  Result Read(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, false, deadline); }
  Result Write(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, true, deadline); }
  Result OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) override;
  void Close() override { pool_->Close(); }

  // A reverse connection the peer dialed at our request.
  void OfferConnection(SocketPtr socket) { pool_->Offer(std::move(socket)); }

 private:
  Result Transfer(const std::vector<IoOp>& ops, bool is_write, Deadline deadline);
  std::shared_ptr<ConnectionPool> pool_;
  std::weak_ptr<LinkHandle> link_;
  RegionTable& regions_;
  std::atomic<uint64_t> next_request_id_{1};
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_ENDPOINT_H_
