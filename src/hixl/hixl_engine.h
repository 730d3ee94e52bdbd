// The HIXL front end on our engine: engine names become cluster ids and
// links, registrations become one-tensor caches (so their regions live in
// the engine's region table and every transport reaches them), and
// addresses become (region id, offset) ops for the engine's data paths.
//
// A connected peer's registrations are fetched over the link's control
// channel (front end "hixl") when an address is not yet known, so memory
// the peer registers after Connect is reachable. The peer's region table
// checks every range again on its side.
//
// Thread-safe; Initialize and Finalize exclude every other call.
#ifndef LLM_DATADIST_SRC_HIXL_HIXL_ENGINE_H_
#define LLM_DATADIST_SRC_HIXL_HIXL_ENGINE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/ops_job.h"
#include "hixl/connect_pool.h"
#include "hixl/engine_name.h"
#include "hixl/hixl_types.h"
#include "hixl/mem_map.h"

namespace lldd::hixl_impl {

// The front-end name on the wire, and its one request.
constexpr const char kFrontEndName[] = "hixl";
constexpr uint8_t kListMemRequest = 1;
constexpr uint8_t kNotifyRequest = 2;
// The vendor's limits: name and message of at most 1024 characters, at
// most 4096 unconsumed notifications per connection.
constexpr size_t kMaxNotifyText = 1024;
constexpr size_t kMaxPendingNotifies = 4096;

struct Notification {
  std::string name;
  std::string message;
};

class HixlEngine {
 public:
  ~HixlEngine() { Finalize(); }

  Result Initialize(const std::string& local_engine, const OptionMap& options);
  void Finalize();
  Result RegisterMem(uint64_t addr, uint64_t len, ::hixl::MemType type, int64_t* handle);
  Result DeregisterMem(int64_t handle);
  Result Connect(const std::string& remote_engine, int32_t timeout_ms);
  Result Disconnect(const std::string& remote_engine, int32_t timeout_ms);
  // Queued on the connection pool; their state is AsyncStatus().
  Result ConnectAsync(const std::string& remote_engine, int32_t timeout_ms);
  Result DisconnectAsync(const std::string& remote_engine, int32_t timeout_ms);
  Result AsyncStatus(const std::string& remote_engine, ::hixl::AsyncConnectStatus* status);
  Result AsyncStatuses(std::map<std::string, ::hixl::AsyncConnectStatus>* statuses);
  Result TransferSync(const std::string& remote_engine, ::hixl::TransferOp op,
                      const std::vector<::hixl::TransferOpDesc>& descs, int32_t timeout_ms);
  // Checked and resolved here (so a bad range fails at once); moved by the
  // engine's transfer queue before the llm.HixlAsyncTimeoutMs deadline.
  Result TransferAsync(const std::string& remote_engine, ::hixl::TransferOp op,
                       const std::vector<::hixl::TransferOpDesc>& descs, const void* user_data, uint64_t* req);
  // After every transfer to the peer submitted before it has finished;
  // the peer keeps notifications in arrival order until GetNotifies.
  Result SendNotify(const std::string& remote_engine, const Notification& notify, int32_t timeout_ms);
  Result GetNotifies(std::vector<Notification>* out);
  Result TransferStatusOf(uint64_t req, ::hixl::TransferStatus* status);
  Result TransferStatuses(const ::hixl::GetTransferStatusArgs& args, std::vector<::hixl::TransferResult>* results);

 private:
  struct Peer {
    EngineName name;
    uint64_t cluster_id = 0;
    // The link was made by the peer dialling us: Disconnect forgets it
    // here without unlinking the peer's link.
    bool borrowed = false;
    std::atomic<bool> gone{false};  // disconnected: never linked again
    std::mutex mu;
    MemMap memory;  // the peer's registrations, as last fetched
    OpsJob::Runner runner;  // runs a job's groups to this peer (SetRunner)
  };
  using PeerPtr = std::shared_ptr<Peer>;

  Result CheckInitialized() const;
  Result QueueConnectTask(const std::string& remote_engine, int32_t timeout_ms, bool connect);
  void SetAsyncStatus(const std::string& canonical, ::hixl::AsyncConnectStatus status);
  Result ConnectLocked(const std::string& remote_engine, Deadline deadline);
  Result FindPeer(const std::string& remote_engine, Deadline deadline, PeerPtr* peer);
  Result FetchPeerMemory(Peer& peer, Deadline deadline);
  // The registration holding each remote range, fetching the peer's list
  // again once if one is not known.
  Result ResolveRemote(Peer& peer, const std::vector<::hixl::TransferOpDesc>& descs, Deadline deadline,
                       std::vector<MemEntry>* out);
  Result ResolveLocal(const std::vector<::hixl::TransferOpDesc>& descs, std::vector<MemEntry>* out);
  // A checked transfer: one engine transfer per pair of memory kinds.
  struct Plan {
    PeerPtr peer;
    bool write = false;
    std::vector<Engine::OpsTransfer> groups;  // or, for a request of one op:
    bool single = false;
    OpsJob::OneOp one;
  };
  Result MakePlan(const std::string& remote_engine, ::hixl::TransferOp op,
                  const std::vector<::hixl::TransferOpDesc>& descs, Deadline deadline, Plan* plan);
  Result RunGroups(Peer& peer, const OpsJob::Groups& groups, Deadline deadline);
  void SetRunner(const PeerPtr& peer);
  // A plan as a request of the engine's queue: joinable with others to the
  // same peer in the same direction, run by the peer's runner.
  // `start`: when the call began (for its meter), if known.
  std::shared_ptr<const TransferJob> JobOf(Plan plan, std::chrono::steady_clock::time_point start = {});
  // `step`, and once more over a fresh link if the link under a connected
  // peer failed (two engines that connect to each other at the same moment
  // can each close the link the other kept; the connection stays, the link
  // under it is replaced).
  Result WithRelink(Peer& peer, Deadline deadline, const std::function<Result()>& step);
  Result ServeFrontEnd(uint64_t remote_cluster_id, const std::vector<uint8_t>& request, std::vector<uint8_t>* reply);
  Result ReceiveNotify(uint64_t remote_cluster_id, const std::vector<uint8_t>& request);

  mutable std::shared_mutex life_mu_;
  std::unique_ptr<Engine> engine_;
  EngineName self_;
  bool auto_connect_ = false;

  std::mutex regs_mu_;
  MemMap local_;

  std::unique_ptr<ConnectPool> connect_pool_;
  int64_t async_timeout_ms_ = 0;
  std::mutex async_mu_;
  std::map<std::string, ::hixl::AsyncConnectStatus> async_;  // latest task's state, by canonical name

  std::mutex notify_mu_;
  std::deque<std::pair<uint64_t, Notification>> notifies_;  // (sender's cluster id, notification)
  std::map<uint64_t, size_t> pending_notifies_;              // per sender

  std::mutex peers_mu_;
  std::map<std::string, PeerPtr> peers_;  // by canonical name
};

}  // namespace lldd::hixl_impl

#endif  // LLM_DATADIST_SRC_HIXL_HIXL_ENGINE_H_
