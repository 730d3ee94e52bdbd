// One linked peer as the cuda_ipc transport sees it (cuda_transport.h).
#ifndef LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_ENDPOINT_H_
#define LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_ENDPOINT_H_

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "gpu/gpu_api.h"
#include "transport/cuda/cuda_describe.h"
#include "transport/transport.h"

namespace lldd {

class CudaTransport;

// How the peer shares a region (on the wire).

constexpr int kRevokeWaitMs = kPeerRevokeWaitMs;  // transport/endpoint.h

class CudaEndpoint final : public Endpoint {
 public:
  CudaEndpoint(CudaTransport& transport, std::shared_ptr<LinkHandle> link, std::shared_ptr<Endpoint> fallback,
               std::string peer_socket);
  ~CudaEndpoint() override;

  const char* name() const override { return "cuda_ipc"; }
  Result Prepare(const std::vector<uint64_t>& region_ids, Deadline deadline) override;
  Result Revoke(const std::vector<uint64_t>& region_ids, Deadline deadline) override;
  Result OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) override;
  Result Read(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, false, deadline, {}); }
  Result Write(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, true, deadline, {}); }
  Result ReadHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) override {
    return Transfer(ops, false, deadline, std::move(hold));
  }
  Result WriteHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) override {
    return Transfer(ops, true, deadline, std::move(hold));
  }
  void Close() override;

  // For tests: imports currently open.
  size_t open_imports() const;

  struct Import;

 private:
  struct RemoteRegion {
    CudaShare share = CudaShare::kNone;
    uint8_t* mapped = nullptr;  // start of the region in our address space
    uint64_t length = 0;
    std::shared_ptr<Import> import;
  };
  Result Transfer(const std::vector<IoOp>& ops, bool write, Deadline deadline, std::shared_ptr<const void> hold);
  Result ServeDescribe(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply);
  Result ServeRevoke(const std::vector<uint8_t>& request);

  CudaTransport& transport_;
  std::weak_ptr<LinkHandle> link_;
  std::shared_ptr<Endpoint> fallback_;
  const std::string peer_socket_;

  mutable std::shared_mutex mu_;  // shared: transfers; exclusive: (un)mapping
  bool closed_ = false;
  std::unordered_map<uint64_t, RemoteRegion> regions_;
  std::map<std::string, std::weak_ptr<Import>> imports_;  // by the peer's allocation key
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_ENDPOINT_H_
