// The same-host data path.
//
// Peer memory allocated by the library (memfd-backed) is mapped into this
// process once, when a transfer first names it; after that a pull is a
// memcpy by the caller: no system call, no message. Peer memory registered
// by the user is read and written with cross-memory attach where the kernel
// permits, and otherwise over the TCP endpoint this one wraps.
//
// A Unix socket beside the TCP link (the "shm channel") carries the
// descriptors, and the revocations: when the peer removes a cache it tells
// us and waits until we have dropped the mapping, so no copy can touch the
// memory after its owner freed it. When the peer dies, every mapping and
// descriptor of it is released.
#ifndef LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_ENDPOINT_H_
#define LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_ENDPOINT_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "memory/region_table.h"
#include "memory/shared_memory.h"
#include "net/socket.h"
#include "transport/endpoint.h"
#include "transport/shm/shm_messages.h"

namespace lldd {

class ShmEndpoint : public Endpoint {
 public:
  // `copy_threads` bounds the threads one large copy uses (0: one per core).
  ShmEndpoint(RegionTable& local_regions, std::shared_ptr<Endpoint> fallback, uint64_t peer_cluster_id,
              unsigned copy_threads);
  ~ShmEndpoint() override;

  const char* name() const override { return "shm"; }
  Result Prepare(const std::vector<uint64_t>& region_ids, Deadline deadline) override;
  Result Read(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, false, deadline); }
  Result Write(const std::vector<IoOp>& ops, Deadline deadline) override { return Transfer(ops, true, deadline); }
  Result Revoke(const std::vector<uint64_t>& region_ids, Deadline deadline) override;
  void Close() override;

  // The shm channel arrives after the endpoint exists (the peer dials it
  // once the link is agreed). Run() then serves it until it closes.
  void AttachChannel(std::shared_ptr<Socket> channel);
  std::string Run();

 private:
  struct RemoteRegion {
    ShmAccess access = ShmAccess::kMemfd;
    uint8_t* mapped = nullptr;   // kMemfd: start of the region in our mapping
    uint64_t address = 0;        // kCrossMemoryAttach: start in the peer
    uint64_t length = 0;
    std::shared_ptr<SharedMemory> mapping;
  };
  struct Pending {
    bool done = false;
    uint32_t status = 0;
    std::vector<uint8_t> meta;
  };

  Result Transfer(const std::vector<IoOp>& ops, bool write, Deadline deadline);
  Result Call(ShmMsg type, const std::vector<uint8_t>& meta, Deadline deadline, Pending* out);
  Result Send(const std::vector<uint8_t>& message, const std::vector<int>& fds, Deadline deadline);
  void AnswerMap(uint64_t request_id, const std::vector<uint8_t>& meta);
  void ApplyMap(const std::vector<uint8_t>& meta, std::vector<int>& fds, uint32_t* status);
  void ApplyRevoke(const std::vector<uint8_t>& meta);
  bool WaitForChannel(Deadline deadline);

  RegionTable& local_regions_;
  std::shared_ptr<Endpoint> fallback_;
  const uint64_t peer_cluster_id_;
  const unsigned copy_threads_;

  // Guards the peer's regions: copies hold it shared, revocation exclusive.
  mutable std::shared_mutex map_mu_;
  std::unordered_map<uint64_t, RemoteRegion> regions_;
  std::unordered_map<uint64_t, std::weak_ptr<SharedMemory>> memories_;  // by memory id
  pid_t peer_pid_ = 0;
  std::atomic<bool> cross_memory_allowed_{true};

  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Socket> channel_;
  std::map<uint64_t, std::shared_ptr<Pending>> pending_;
  uint64_t next_id_ = 1;
  std::mutex send_mu_;
  bool closed_ = false;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_ENDPOINT_H_
