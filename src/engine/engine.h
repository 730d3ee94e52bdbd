// The engine behind LlmDataDist: options, caches, links, and the calls
// that move bytes. LlmDataDist is a thin shell over it that turns Results
// into status codes and last-error messages.
//
// Its parts, one file each:
//   engine.cc            lifecycle (Initialize/SetRole/Finalize) and caches
//   engine_links.cc      the link table: link, accept, unlink, stale links
//   engine_control.cc    requests from linked peers (control and joins)
//   engine_transfer.cc   Pull/Push (planned, then one endpoint call) and Copy
//   engine_ranges.cc     byte ranges pushed to a peer's caches or addresses
//   engine_directory.cc  discovery (llm.Directory): publish, resolve, departures
//   acceptor.cc          the listener and admission of new connections
//   handshake.cc         HELLO / token challenge / HELLO_ACK
//   transport_set.cc     the data paths, and which ones a link uses
//
// Locking: `lifecycle_mu_` is held shared by every API call and exclusively
// by Initialize/SetRole/Finalize, so teardown never frees what a call still
// uses; Finalize first shuts every socket down so in-flight calls return
// quickly (with an error) and release it.
#ifndef LLM_DATADIST_SRC_ENGINE_ENGINE_H_
#define LLM_DATADIST_SRC_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/thread_group.h"
#include "directory/directory.h"
#include "engine/acceptor.h"
#include "engine/cache_registry.h"
#include "engine/link.h"
#include "engine/options.h"
#include "engine/transfer_planner.h"
#include "engine/transfer_queue.h"
#include "engine/transport_set.h"
#include "llm_datadist/llm_types.h"
#include "memory/region_table.h"
#include "metrics/call_meter.h"
#include "metrics/http_exporter.h"
#include "metrics/metrics.h"

namespace lldd {

class Engine {
 public:
  Engine(uint64_t cluster_id, llm_datadist::LlmRole role);
  ~Engine();

  Result Initialize(const OptionMap& options);
  void Finalize();
  Result SetRole(llm_datadist::LlmRole role, const OptionMap& options);

  Result Link(const std::vector<llm_datadist::ClusterInfo>& clusters, std::vector<Status>& rets, int32_t timeout_ms);
  Result Unlink(const std::vector<llm_datadist::ClusterInfo>& clusters, std::vector<Status>& rets, int32_t timeout_ms,
                bool force);

  Result AllocateCache(const llm_datadist::CacheDesc& desc, llm_datadist::Cache& cache, bool library = false);
  Result DeallocateCache(int64_t cache_id);
  Result RegisterKvCache(const llm_datadist::CacheDesc& desc, const std::vector<uint64_t>& addrs, int64_t& cache_id,
                         bool library = false);
  Result UnregisterKvCache(int64_t cache_id);
  // The description of a local cache (LLM_KV_CACHE_NOT_EXIST if unknown).
  Result LocalCacheDesc(int64_t cache_id, llm_datadist::CacheDesc* desc);

  // A remote <-> local transfer, described the way the API calls do.
  struct TransferSpec {
    bool push = false;                 // local -> remote
    llm_datadist::CacheIndex remote;   // cluster, cache, batch (0 for blocks)
    int64_t local_cache_id = 0;
    bool blocks = false;
    uint32_t local_batch = 0;
    int64_t size = -1;
    const std::vector<uint64_t>* remote_blocks = nullptr;
    const std::vector<uint64_t>* local_blocks = nullptr;
    llm_datadist::KvCacheExtParam ext;
  };
  Result Transfer(const TransferSpec& spec);  // counted, around TransferOne
  Result CopyKvCache(const llm_datadist::Cache& src, const llm_datadist::Cache& dst, uint32_t src_batch,
                     uint32_t dst_batch, uint64_t offset, int64_t size);
  Result CopyKvBlocks(const llm_datadist::Cache& src, const llm_datadist::Cache& dst,
                      const std::vector<uint64_t>& src_blocks, const std::vector<std::vector<uint64_t>>& dst_lists);

  uint16_t listen_port() const { return acceptor_.port(); }
  const char* LinkTransport(uint64_t remote_cluster_id);
  // Counters since construction, and the links held now.
  llm_datadist::LlmDataDist::Stats GetStats();

  // --- For front ends other than LlmDataDist (the HIXL API, src/hixl/),
  // which share this engine's links, transports and region table.
  // A named request handler that linked peers reach with CallFrontEnd. It
  // runs on the link's control reader, so it must be quick.
  using FrontEndHandler = std::function<Result(uint64_t remote_cluster_id, const std::vector<uint8_t>& request,
                                               std::vector<uint8_t>* reply)>;
  void SetFrontEndHandler(const std::string& name, FrontEndHandler handler);
  Result CallFrontEnd(uint64_t remote_cluster_id, const std::string& name, const std::vector<uint8_t>& request,
                      Deadline deadline, std::vector<uint8_t>* reply);
  // A registered or allocated cache (its tensors' regions and memory kind).
  std::shared_ptr<const LocalCache> FindCache(int64_t cache_id) const;
  // Moves planned byte ranges between local memory (leased through
  // `local_region_ids`) and a linked peer's regions, one-sidedly.
  struct OpsTransfer {
    uint64_t remote_cluster_id = 0;
    bool push = false;  // local -> remote
    uint32_t local_kind = 0;
    uint32_t remote_kind = 0;
    std::vector<uint64_t> local_region_ids;
    std::vector<uint64_t> remote_region_ids;
    std::vector<IoOp> ops;
  };
  Result TransferOps(const OpsTransfer& transfer, Deadline deadline);
  // Measures one call of a front end that runs as a request of the queue
  // (metrics: in flight while the meter lives; the data path is the one
  // the first group takes). Engine::Transfer measures its own calls.
  metrics::MeterSpec MeterCall(uint64_t remote_cluster_id, const std::vector<OpsTransfer>& groups);
  // The same for one group's kinds and bytes.
  metrics::MeterSpec MeterCall(uint64_t remote_cluster_id, bool push, uint32_t local_kind, uint32_t remote_kind,
                               uint64_t bytes);
  // Every transfer is a request of this queue (transfer_queue.h): front
  // ends submit asynchronous ones; Pull*/Push* run theirs through RunNow.
  TransferQueue& transfers() { return transfers_; }

  // engine_ranges.cc: LlmDataDist::PushKvRanges and GetRemoteCacheDesc.
  Result PushRanges(int64_t local_cache_id, uint64_t remote_cluster_id,
                    const std::vector<llm_datadist::LlmDataDist::RangeCopy>& ranges);
  Result RemoteCacheDesc(uint64_t remote_cluster_id, int64_t cache_id, llm_datadist::CacheDesc* desc);

 private:
  using LinkPtr = std::shared_ptr<lldd::Link>;

  // engine.cc
  Result CheckInitialized() const;
  TransportConfig MakeTransportConfig() const;
  Result StartServing();
  void StopServing();
  void CloseEverything();
  // Asks every linked peer to stop reaching the regions. Fails (after
  // closing the links concerned) if a peer that could still write memory of
  // `kind` on its own (Transport::RevokeNeedsPeer) did not confirm.
  Result RevokeFromPeers(const std::vector<uint64_t>& region_ids, uint32_t kind, bool allocated);

  // engine_links.cc
  Result LinkOne(const llm_datadist::ClusterInfo& cluster, Deadline deadline);
  Result UnlinkOne(const llm_datadist::ClusterInfo& cluster, Deadline deadline, bool force);
  // Both sides linked to each other at once and the peer's link is the one
  // kept: waits for it to be accepted here, and holds it.
  // `being_accepted`: a HELLO of the peer is being accepted here; give up
  // if that ends without a link.
  Result AdoptPeerLink(uint64_t remote_cluster_id, Deadline deadline, bool being_accepted = false);
  void EndDial(uint64_t remote_cluster_id);
  void EndAccept(uint64_t remote_cluster_id);
  // A new link object wired to this engine (control channel, join dialer).
  LinkPtr MakeLink(uint64_t remote_cluster_id, bool initiator, uint64_t link_id, uint64_t link_secret,
                   const std::shared_ptr<Socket>& control_socket);
  // Creates the endpoints of the agreed transports, any-host ones first so
  // same-host ones get them as fallback.
  Result ConnectPaths(const LinkPtr& link, const std::vector<TransportSet::Choice>& chosen, Deadline deadline);
  // The accepting side of a link: checks, chooses paths, publishes.
  Status AcceptControl(const std::shared_ptr<Socket>& socket, const Hello& hello, const std::string& peer,
                       LinkPtr* link, std::string* why, std::vector<TransportOffer>* paths);
  // Whether a live link of a cluster that says hello again is stale (its
  // peer restarted or dropped it) rather than held by a duplicate.
  bool LinkIsStale(const LinkPtr& existing, const Hello& hello);
  // The peer of a link answers a trivial request before the deadline.
  bool PeerAnswers(const LinkPtr& link, Deadline deadline);
  void RunControl(const LinkPtr& link);
  void RemoveLink(const LinkPtr& link);
  // Under links_mu_: whether one more link fits (llm.MaxLinks), after
  // dropping broken ones if need be.
  bool HasRoomLocked();
  Result FindLink(uint64_t cluster_id, LinkPtr* link);
  Result DialJoin(lldd::Link& link, const std::string& transport, const std::vector<uint8_t>& join_info,
                  Deadline deadline, std::shared_ptr<Socket>* out);

  // engine_directory.cc
  Result StartDirectory();
  void StopDirectory();
  DirectoryEntry SelfEntry() const;
  // Fills the address of a ClusterInfo that names only a cluster id.
  Result ResolveCluster(llm_datadist::ClusterInfo* cluster, Deadline deadline, uint64_t* instance_id);
  void OnPeerDeparted(uint64_t cluster_id, uint64_t instance_id);

  // engine_control.cc
  void OnHello(std::shared_ptr<Socket> socket, const std::string& peer, uint64_t request_id, const Hello& hello);
  void ServeControl(const std::shared_ptr<Socket>& socket, const std::string& peer, uint64_t request_id,
                    const Hello& hello);
  void ServeJoin(const std::shared_ptr<Socket>& socket, const std::string& peer, uint64_t request_id,
                 const Hello& hello);
  void HandleControl(const std::weak_ptr<lldd::Link>& link, MsgType type, std::vector<uint8_t> meta,
                     ControlChannel::Responder respond);

  // engine_ranges.cc: the peer side of PushRanges' address resolution.
  void ServeAddressLookups();

  // engine_transfer.cc
  // A transfer; names the data path it used and the bytes it moved.
  Result TransferOne(const TransferSpec& spec, const char** transport, uint64_t* bytes);
  struct PlannedTransfer {
    Deadline deadline = Deadline::Never();
    LinkPtr link;
    const char* transport = nullptr;
    OpsTransfer ops;
  };
  // Checks a Pull/Push and plans its ops (under the lifecycle lock).
  Result PlanTransfer(const TransferSpec& spec, PlannedTransfer* planned);
  Result CopyLocal(const LocalCache& src, const LocalCache& dst, const std::vector<CopyRange>& ranges);

  const uint64_t cluster_id_;
  const uint64_t instance_id_;
  std::atomic<llm_datadist::LlmRole> role_;  // read by connection threads
  EngineOptions options_;
  bool initialized_ = false;
  std::atomic<bool> stopping_{false};
  mutable std::shared_mutex lifecycle_mu_;

  metrics::Registry metrics_;  // before the parts that record into it
  metrics::HttpExporter exporter_;
  RegionTable regions_;
  CacheRegistry caches_{regions_};
  TransportSet transports_;
  Acceptor acceptor_;
  ThreadGroup threads_;
  TransferQueue transfers_;
  // Runs a job's groups with TransferOps: for the jobs of Pull*/Push*.
  std::shared_ptr<const std::function<Result(const std::vector<OpsTransfer>&, Deadline)>> ops_runner_;

  std::shared_mutex links_mu_;  // shared: FindLink, on every transfer of every thread
  std::map<uint64_t, LinkPtr> links_;  // by remote cluster id
  // Changes whenever links_ does (under links_mu_), so that what was
  // learnt from a link can be reused without the lock (MeterCall).
  std::atomic<uint64_t> links_version_{0};

  std::unique_ptr<Directory> directory_;  // with llm.Directory; changed only under lifecycle_mu_
  // Mutual linking: clusters a LinkOne is dialing now (count of calls), and
  // a signal for a LinkOne waiting for the peer's link to arrive.
  std::map<uint64_t, int> dialing_;
  std::map<uint64_t, int> accepting_;  // HELLOs being accepted now, by cluster
  std::condition_variable_any links_cv_;
  mutable std::mutex front_ends_mu_;
  std::map<std::string, FrontEndHandler> front_ends_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_ENGINE_H_
