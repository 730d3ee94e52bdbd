// "cuda_ipc": the same-host data path for GPU memory.
//
// A peer's regions are opened once per link and cache and kept: GPU memory
// the library allocated (VMM) is imported from the POSIX fd of its handle,
// GPU memory a user registered (cudaMalloc, PyTorch) through its legacy IPC
// handle, and a peer's host cache (memfd) is mapped and registered with
// CUDA; each allocation is opened once however many regions lie in it.
// Descriptions travel over the link's control channel (LinkHandle::CallPeer
// -> Endpoint::OnPeerCall); descriptors over a Unix socket of this
// transport, against a one-time ticket handed out in the description.
//
// A Read or Write is one gather/scatter kernel launch (GpuCopier) over every
// range, on a stream of ours, waited for within the deadline. Ranges this
// path cannot reach (the peer's user host memory; host memory on both
// sides) go to the fallback endpoint (TCP).
//
// Revocation: when a region's owner removes it, it calls Revoke(), which
// asks the peer to drop the region and close every import no region needs
// any more, and to answer once they are closed (or after
// kRevokeWaitMs, reporting a copy that is still running there).
#ifndef LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_TRANSPORT_H_
#define LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_TRANSPORT_H_

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gpu/gpu_api.h"
#include "gpu/gpu_copier.h"
#include "net/socket.h"
#include "transport/transport.h"

namespace lldd {

constexpr const char* kCudaTransportName = "cuda_ipc";

class CudaTransport final : public Transport {
 public:
  // `api` defaults to Gpu() (tests pass a FakeGpuApi).
  explicit CudaTransport(GpuApi* api = nullptr);
  ~CudaTransport() override;

  const char* name() const override { return kCudaTransportName; }
  TransportCaps caps() const override;
  Result Start(const TransportConfig& config, RegionTable& regions, size_t slot) override;
  void Stop() override;
  Result LocalInfo(std::vector<uint8_t>* info) const override;
  Result CanReach(const std::vector<uint8_t>& peer_info) const override;
  Result OnRegionAdded(Region& region) override;
  void OnRegionRemoved(Region& region) override;
  // GPU memory we did not allocate is shared by legacy CUDA IPC, which
  // nothing on our side can revoke; VMM handles and memfds keep the memory
  // alive for as long as the peer holds them.
  bool RevokeNeedsPeer(uint32_t kind, bool allocated) const override {
    return kind == kDeviceMemory && !allocated;
  }
  Result Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                 std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) override;

  // --- used by CudaEndpoint ---
  GpuApi& api() { return api_; }
  GpuCopier& copier() { return *copier_; }
  int device() const { return device_; }
  RegionTable& regions() { return *regions_; }
  // Where a local address lies: GPU memory, host memory the GPU can reach
  // (registered now if need be), or neither (nullopt-like: false).
  // On success [*lo, *hi) is the whole region (or GPU allocation) found, so
  // that the caller can skip the lookup for the next addresses inside it.
  bool PrepareLocal(const uint8_t* p, uint64_t length, bool* device, uintptr_t* lo, uintptr_t* hi);
  // Whether regions registered here cover [base, base + size) wholly: legacy
  // IPC hands out a whole cudaMalloc allocation, which under a caching
  // allocator holds other tensors too, so only such allocations go by IPC.
  bool CoversAllocation(uintptr_t base, uint64_t size);
  // Hands `fds` (duplicated here) to whoever presents the returned ticket.
  std::string OfferFds(const std::vector<int>& fds);
  const std::string& socket_name() const { return socket_name_; }
  // Ticket connections waiting at once, and how long each may stay silent.
  static constexpr size_t kMaxTicketConnections = 64;
  static constexpr int kTicketWaitMs = 1000;

 private:
  struct LocalRegion {
    uint64_t length = 0;
    MemoryKind kind = kHostRegistered;
    const void* allocation = nullptr;
    uint8_t* alloc_base = nullptr;
    uint64_t alloc_size = 0;
    int device = -1;  // GPU memory: its device
  };
  struct Offer {
    std::vector<int> fds;
    std::chrono::steady_clock::time_point expires;
  };
  // Whether our kernels reach GPU memory of `device` (ours, or a peer GPU
  // with peer access; VMM memory of ours only on our device).
  bool ReachDevice(int device, bool vmm);  // requires mu_
  // One thread serves every ticket connection, polling them all: a
  // connection that stays silent costs a descriptor for at most
  // kTicketWaitMs, not the others' turn. (Tickets are single SEQPACKET
  // messages, so a readable connection is answered without waiting.)
  // Beyond kMaxTicketConnections waiting at once, the oldest is dropped.
  void ServeTickets();
  void ServeTicket(const Socket& conn);
  void DropOffers(bool all);

  GpuApi& api_;
  int device_ = 0;
  RegionTable* regions_ = nullptr;
  std::unique_ptr<GpuCopier> copier_;
  std::string socket_name_;
  Socket listener_;
  std::thread ticket_thread_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::map<uintptr_t, LocalRegion> local_;          // by base address
  std::map<uintptr_t, uint64_t> registered_;         // host ranges we pinned: base -> length
  std::set<int> unreachable_devices_;                // warned about once
  std::unordered_map<std::string, Offer> offers_;  // by ticket
};

std::unique_ptr<Transport> MakeCudaTransport();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_CUDA_CUDA_TRANSPORT_H_
