// llm-datadist: moves LLM KV caches between prefill and decode processes.
//
// This header is the LLM-DataDist API (Huawei CANN's KV-cache transfer
// interface) on commodity hardware. Code written against the original
// compiles against it unchanged. It needs C++17.
//
// Roles. An instance given llm.ListenIpInfo is a server and listens there;
// without it, a client. Clients link to servers; once linked, either end may
// pull from or push to the other, and the remote application calls nothing
// during a transfer. The LlmRole only labels the instance.
//
// Statuses. Every call that returns a Status returns LLM_SUCCESS or a code
// of llm_error_codes.h, and on failure leaves a reason that
// GetLastErrorMessage() returns on the same thread (and a log line). No
// call crashes or hangs past its timeout on bad arguments, and transfers
// write only inside the caches they name (registered memory must be as
// large as its CacheDesc says).
//
// Thread safety:
//  - All methods of one LlmDataDist may be called from several threads at
//    once, except that Initialize, SetRole and Finalize must not race each
//    other. Transfers in flight when Finalize runs return an error.
//  - Transfers into the same bytes from several threads at once race like
//    any two writes; transfers into different batches or blocks do not.
//  - The destructor must not race any other call on the instance.
//  - The last-error message is per thread; the static methods may be
//    called at any time, from any thread.
//  - Different instances share nothing a caller must lock.
//
// fork(). A child process inherits none of the parent's library threads, so
// it must not use an instance created before the fork (destroying it there
// is not safe either: let the child exit without it). It may create and use
// instances of its own: the library's process-wide thread pools start
// afresh in the child.
//
// Extensions of ours live inside the class (static or member functions and
// static constants) so that no free name of ours can clash with a user's
// own helpers written next to `using namespace llm_datadist;`.
#ifndef LLM_DATADIST_LLM_DATADIST_H_
#define LLM_DATADIST_LLM_DATADIST_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llm_datadist/ge_types.h"
#include "llm_datadist/llm_error_codes.h"
#include "llm_datadist/llm_types.h"

namespace llm_datadist {

class LlmDataDist {
 public:
  // An instance for the cluster `cluster_id`, which must be unique among
  // all instances that link to one another (a CacheIndex names a peer by
  // it). Does nothing else: call Initialize before any other method.
  LlmDataDist(uint64_t cluster_id, LlmRole role);
  // Finalizes (see Finalize) if that has not been done.
  ~LlmDataDist();
  LlmDataDist(const LlmDataDist&) = delete;
  LlmDataDist& operator=(const LlmDataDist&) = delete;

  // Reads the options (the OPTION_* keys of llm_types.h and the OPTION_*
  // members below; other keys are ignored with a warning) and, with
  // OPTION_LISTEN_IP_INFO, starts listening. OPTION_DEVICE_ID is required.
  // Returns LLM_PARAM_INVALID for a missing or malformed option (the
  // message names it), LLM_FAILED if already initialized or the address
  // cannot be listened on.
  Status Initialize(const std::map<AscendString, AscendString>& options);
  // Closes every link, stops listening, releases every cache (registered
  // memory stays the caller's) and joins every thread. Idempotent; the
  // instance may be initialized again afterwards.
  void Finalize();
  // Switches between server and client: with OPTION_LISTEN_IP_INFO in
  // `options` the instance listens there afterwards, without it it stops
  // listening. Caches stay. OPTION_ENABLE_SET_ROLE is not required (the
  // original's C++ SetRole does not check it either). Returns
  // LLM_EXIST_LINK while any link is up, LLM_PARAM_INVALID for a bad role
  // or listen address, LLM_FAILED if not initialized or the address cannot
  // be listened on.
  Status SetRole(LlmRole role, const std::map<AscendString, AscendString>& options = {});

  // Links to each cluster (its remote_cluster_id and one remote_ip_infos
  // address; one local_ip_infos address optionally picks the local
  // interface), all in parallel within `timeout_in_millis`. `rets` gets one
  // status per cluster, in input order: LLM_SUCCESS, LLM_ALREADY_LINK,
  // LLM_LINK_FAILED (refused, unreachable, out of time; the message says
  // which), LLM_CLUSTER_NUM_EXCEED_LIMIT (more than kMaxClusterNum links
  // here or at the peer) or LLM_PARAM_INVALID (a bad address, or our own
  // cluster id). Returns LLM_SUCCESS only if every cluster linked, else the
  // first failing status of `rets`; LLM_PARAM_INVALID for an empty list or
  // a timeout <= 0.
  Status LinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                         int32_t timeout_in_millis = 1000);
  // Unlinks each cluster (by remote_cluster_id). Without `force_flag` the
  // peer is told and tears down its end too; LLM_UNLINK_FAILED if it does
  // not confirm in time. With `force_flag` only the local end goes (the
  // peer then unlinks on its own; use it for a dead peer). `rets` and the
  // result are as for LinkLlmClusters; LLM_NOT_YET_LINK for a cluster that
  // is not linked.
  Status UnlinkLlmClusters(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                           int32_t timeout_in_millis = 1000, bool force_flag = false);

  // Allocates (zero-filled host memory) `cache_desc.num_tensors` tensors of
  // `shape` and `data_type`, sets `cache.cache_id` (positive, never reused
  // by this instance) and `cache.tensor_addrs`, and makes the cache
  // reachable by linked peers, including those linked already. Returns
  // LLM_PARAM_INVALID for a bad description, LLM_OUT_OF_MEMORY (placement
  // kHost) or LLM_DEVICE_OUT_OF_MEMORY (kDevice) if the memory cannot be
  // had.
  Status AllocateCache(const CacheDesc& cache_desc, Cache& cache);
  // Frees an allocated cache once transfers using it have finished; peers
  // get LLM_KV_CACHE_NOT_EXIST for it from then on. An unknown or already
  // freed id is LLM_SUCCESS; a registered cache is LLM_PARAM_INVALID (use
  // UnregisterKvCache).
  Status DeallocateCache(int64_t cache_id);
  // Adopts caller memory: `addrs` holds one address per tensor, each
  // `bytes(shape, data_type)` long, which the caller keeps valid until
  // UnregisterKvCache or Finalize. Sets `cache_id` as AllocateCache does;
  // the cache is reachable by linked peers at once. Returns
  // LLM_PARAM_INVALID for a bad description or address list. `cfg` is
  // reserved.
  Status RegisterKvCache(const CacheDesc& cache_desc, const std::vector<uint64_t>& addrs,
                         const RegisterCfg& cfg, int64_t& cache_id);
  // Forgets a registered cache once transfers using it have finished (the
  // memory stays the caller's). An unknown id is LLM_SUCCESS; an allocated
  // cache is LLM_PARAM_INVALID (use DeallocateCache).
  Status UnregisterKvCache(int64_t cache_id);

  // Transfers between a local cache (only its cache_id is read) and a cache
  // of a linked peer (CacheIndex.cluster_id, .cache_id). Only the caller's
  // process acts. Each returns when every byte has arrived, or with an
  // error, within OPTION_SYNC_CACHE_WAIT_TIME; a failed transfer may have
  // written part of the destination. Each may return LLM_NOT_YET_LINK (the
  // cluster is not linked), LLM_KV_CACHE_NOT_EXIST (an unknown local or
  // remote cache), LLM_PARAM_INVALID (index, size, block list, layer range
  // or shape that does not fit, or the caller's own cluster id),
  // LLM_TIMEOUT (the wait time passed), LLM_LINK_FAILED (the link is
  // broken) or LLM_LINK_BUSY (the peer holds as many data connections for
  // this link as it allows; retry).
  //
  // Once a transfer has returned, whatever its status, none of its bytes
  // lands in local memory any more. A call whose wait time passes stops its
  // copies first: over shm, TCP and UCX it returns within a few
  // milliseconds of the wait time; a GPU copy stops between pieces of
  // 256 KiB (copy engines: after at most 4 queued chunks of 16 MiB), so it
  // returns within the time the GPU needs for those (microseconds between
  // GPU buffers, a few milliseconds over PCIe) and never more than 1 s
  // after the wait time. A GPU that has not finished them even then (hung,
  // or starved by other work) keeps the caches it copies from and into in
  // use: DeallocateCache and UnregisterKvCache wait until it ends.
  //
  // PullKvCache copies batch `src_cache_index.batch_index` of the remote
  // cache into batch `batch_index` of the local one, for every tensor (or
  // those of the layers in `ext_param`); `size` > 0 copies only the first
  // `size` bytes of each tensor's batch, -1 all of it.
  Status PullKvCache(const CacheIndex& src_cache_index, const Cache& dst_cache, uint32_t batch_index = 0U,
                     int64_t size = -1, const KvCacheExtParam& ext_param = {});
  // Copies remote block `src_blocks[i]` into local block `dst_blocks[i]`,
  // for every i and tensor. `src_cache_index.batch_index` must be 0; the
  // lists must be non-empty and of equal length.
  Status PullKvBlocks(const CacheIndex& src_cache_index, const Cache& dst_cache,
                      const std::vector<uint64_t>& src_blocks, const std::vector<uint64_t>& dst_blocks,
                      const KvCacheExtParam& ext_param = {});
  // PullKvCache's mirror image: local batch `src_batch_index` into remote
  // batch `dst_cache_index.batch_index`. Only `size` -1 is accepted.
  Status PushKvCache(const Cache& src_cache, const CacheIndex& dst_cache_index, uint32_t src_batch_index = 0U,
                     int64_t size = -1, const KvCacheExtParam& ext_param = {});
  // PullKvBlocks' mirror image: local block `src_blocks[i]` into remote
  // block `dst_blocks[i]`.
  Status PushKvBlocks(const Cache& src_cache, const CacheIndex& dst_cache_index,
                      const std::vector<uint64_t>& src_blocks, const std::vector<uint64_t>& dst_blocks,
                      const KvCacheExtParam& ext_param = {});
  // Copies between two local caches, tensor by tensor: bytes
  // [offset, offset + size) of batch `src_batch_index` into the same bytes
  // of batch `dst_batch_index` (`size` -1: to the end of the batch).
  // Returns LLM_KV_CACHE_NOT_EXIST for an unknown cache, LLM_PARAM_INVALID
  // for what does not fit.
  Status CopyKvCache(const Cache& src_cache, const Cache& dst_cache, uint32_t src_batch_index = 0U,
                     uint32_t dst_batch_index = 0U, uint64_t offset = 0U, int64_t size = -1);
  // Copies block `src_blocks[i]` of one local cache into block
  // `dst_blocks[i]` of the destination, once for each list of
  // `dst_blocks_list` (one source, several targets). Statuses as for
  // CopyKvCache.
  Status CopyKvBlocks(const Cache& src_cache, const Cache& dst_cache, const std::vector<uint64_t>& src_blocks,
                      const std::vector<std::vector<uint64_t>>& dst_blocks_list);

  // --- Extensions (not in the original API) ---

  // Option keys of ours, for Initialize (users may pass the strings too).
  // Data connections per TCP link, "1".."64" (default: one per core, 4..16);
  // large transfers are striped over them, one thread per connection.
  static constexpr const char OPTION_TCP_CONNECTIONS_PER_LINK[] = "llm.TcpConnectionsPerLink";
  // At most this many threads for one large same-host copy, "0".."64"
  // (default "0": one per core). The copy pool has min(cores, 64) threads,
  // so larger values act as that.
  static constexpr const char OPTION_COPY_THREADS[] = "llm.CopyThreads";
  // A secret both ends of a link must hold (HMAC challenge-response; never
  // sent). Unset on both ends: no check; set on one end only: no link.
  static constexpr const char OPTION_LINK_TOKEN[] = "llm.LinkToken";
  // Discovery through etcd: "etcd://host:port[,host:port...]". Initialize
  // publishes this instance (cluster id, role, listener, data paths) under
  // a lease it keeps alive, and fails if etcd is unreachable or another live
  // instance holds the cluster id; Finalize removes the entry, a crash lets
  // it expire. LinkLlmClusters then accepts a ClusterInfo with no
  // remote_ip_infos (the address comes from etcd), and links to a peer whose
  // entry vanished fail fast with LLM_LINK_FAILED.
  static constexpr const char OPTION_DIRECTORY[] = "llm.Directory";
  // The etcd key prefix of the entries, "/llm_datadist/" by default.
  static constexpr const char OPTION_DIRECTORY_PREFIX[] = "llm.DirectoryPrefix";
  // The lease's time to live in seconds, "1".."3600" (default "5"): how
  // long a crashed instance stays listed.
  static constexpr const char OPTION_DIRECTORY_TTL[] = "llm.DirectoryTtl";
  // How many links this instance may hold at once, "1".."65536" (default
  // "512", the original's limit). The server's cost per link: see README.
  static constexpr const char OPTION_MAX_LINKS[] = "llm.MaxLinks";
  // Serves the counters of GetStats() as Prometheus text on
  // http://<ip>:<port>/metrics; "port" (every address) or "ip:port".
  // Unset (the default): no metrics listener.
  static constexpr const char OPTION_METRICS_PORT[] = "llm.MetricsPort";

  // What this instance has done since Initialize (counters) and holds now
  // (gauges). "pull" reads from a peer, "push" writes to one.
  struct Stats {
    struct Latency {
      std::vector<double> upper_bounds_seconds;  // ascending; then an implicit +Inf bucket
      std::vector<uint64_t> counts;              // calls per bucket (not cumulative), bounds + 1 entries
      uint64_t count = 0;
      double sum_seconds = 0;
    };
    struct Transfers {
      uint64_t pull_bytes = 0, push_bytes = 0;  // moved by calls that succeeded
      uint64_t pull_calls = 0, push_calls = 0;  // every call, failed ones too
      std::map<Status, uint64_t> failures;      // failed calls by status code
      Latency pull_latency, push_latency;       // of every call
      int64_t in_flight = 0;                    // calls running now
    };
    // By data path ("tcp", "shm", ...): calls that reached one.
    std::map<std::string, Transfers> transports;
    // By linked peer's cluster id: every Pull/Push call naming it.
    std::map<uint64_t, Transfers> peers;
    uint64_t links = 0;            // held now
    uint64_t max_links = 0;        // OPTION_MAX_LINKS
    uint64_t links_initiated = 0;  // LinkLlmClusters that succeeded
    uint64_t links_accepted = 0;   // links peers made to this server
    uint64_t links_closed = 0;     // unlinked, or broken ones dropped to make room
    std::map<std::string, uint64_t> links_refused;  // by reason: "limit", "token", "other"
    // Admission of connections to the listener: accepted sockets, first
    // frames (HELLO) received, those still awaited, and those dropped:
    // no first frame in time, evicted from a full table or from a source
    // holding too many, or a malformed first frame.
    uint64_t connections_accepted = 0;
    uint64_t handshakes_completed = 0;
    int64_t handshakes_pending = 0;
    uint64_t handshakes_dropped_timeout = 0;
    uint64_t handshakes_dropped_full = 0;
    uint64_t handshakes_dropped_source = 0;
    uint64_t handshakes_dropped_bad_frame = 0;
    int64_t in_flight = 0;  // Pull/Push calls running now
  };
  // A snapshot: counters since this object was constructed (they survive
  // Finalize and a new Initialize; per-peer ones go with their link).
  Stats GetStats() const;

  // Why the last call on this thread that returned a Status failed; "" if
  // that call succeeded (each call that returns a Status sets or clears
  // it), or if this thread made none. Valid until this thread's next call.
  static const char* GetLastErrorMessage();
  // The name of a status code ("LLM_TIMEOUT"); "UNKNOWN" for other values.
  static const char* GetStatusName(Status status);
  // The port this instance listens on (useful after listening on port 0);
  // 0 for a client or before Initialize.
  uint16_t GetListenPort() const;
  // Layer-wise asynchronous push: the KV cache of layer i travels while the
  // model computes layer i+1. PushKvCacheLayerwise returns at once with a
  // task; the task's own thread, for each layer of `src_cache` in order
  // (num_tensors / tensor_num_per_layer layers), calls `layer_ready(i)`,
  // which returns true once layer i is computed (false: it never will be),
  // then pushes layer i to every destination whose source range holds it.
  // Destinations are independent: one that fails gets its status and no
  // more layers, the others go on. `layer_ready` returning false stops the
  // task: no later layer is sent, and every destination not yet complete
  // gets LLM_PARAM_INVALID (the vendor's Python status for it). Finalize
  // (and the destructor) stop running tasks before the next layer and wait
  // for them, including a layer_ready call in progress.
  struct LayerwiseDestination {
    CacheIndex dst_cache_index;                      // cluster, cache, batch (0 for blocks)
    std::pair<int32_t, int32_t> src_layer_range{-1, -1};  // inclusive; {-1, -1}: every layer
    std::pair<int32_t, int32_t> dst_layer_range{-1, -1};  // same length; {-1, -1}: as the source
    uint32_t src_batch_index = 0;                     // contiguous caches (PushKvCache)
    std::vector<uint64_t> src_blocks;                 // non-empty: paged caches (PushKvBlocks)
    std::vector<uint64_t> dst_blocks;
  };
  using LayerReadyFn = std::function<bool(uint32_t layer_index)>;
  class LayerwiseTask {
   public:
    // Waits up to `timeout_in_millis` (-1: until the end). Returns
    // LLM_TIMEOUT while the task still runs, else LLM_SUCCESS if every
    // destination got all its layers, else the first destination's
    // failure. `results`, if given, gets one status per destination in
    // order (LLM_TIMEOUT for each while the task runs).
    Status Wait(int32_t timeout_in_millis = -1, std::vector<Status>* results = nullptr) const;
    // Whether the task has ended (Wait then returns at once).
    bool Done() const;
    struct State;
    explicit LayerwiseTask(std::shared_ptr<State> state) : state_(std::move(state)) {}

   private:
    std::shared_ptr<State> state_;
  };
  // Returns LLM_PARAM_INVALID (no task started) for an empty destination
  // list, a missing layer_ready, a tensor_num_per_layer that does not
  // divide the cache's tensors, or a layer range outside the cache;
  // LLM_KV_CACHE_NOT_EXIST for an unknown src_cache. Errors of the pushes
  // themselves arrive per destination (see PushKvCache, PushKvBlocks).
  Status PushKvCacheLayerwise(const Cache& src_cache, const std::vector<LayerwiseDestination>& destinations,
                              LayerReadyFn layer_ready, std::shared_ptr<LayerwiseTask>& task,
                              uint8_t tensor_num_per_layer = 2U);

  // Byte ranges of a local cache pushed to a linked peer, each destination
  // named by the peer's own memory: the vendor's layer-wise transfers to raw
  // destination addresses (TransferConfig) and from a contiguous cache into
  // blocks are built on it. A range's destination is tensor `dst_tensor` of
  // the peer's cache `dst_cache_id` at `dst_offset`, or, with dst_cache_id
  // 0, the address `dst_offset` of the peer's process, which must lie (with
  // `length`) inside one tensor of a cache the peer allocated or
  // registered: the peer resolves it. Every range is checked before the
  // first byte moves: LLM_PARAM_INVALID (nothing written) for one outside
  // its source tensor, outside the peer's caches or past its destination
  // tensor; LLM_KV_CACHE_NOT_EXIST for an unknown local or remote cache;
  // otherwise as PushKvCache.
  struct RangeCopy {
    uint32_t src_tensor = 0;
    uint64_t src_offset = 0;
    uint64_t length = 0;
    int64_t dst_cache_id = 0;  // 0: dst_offset is a peer address
    uint32_t dst_tensor = 0;
    uint64_t dst_offset = 0;
  };
  Status PushKvRanges(const Cache& src_cache, uint64_t remote_cluster_id, const std::vector<RangeCopy>& ranges);
  // The description of a linked peer's cache (placement, tensors, type,
  // shape), so that a caller can plan ranges against it.
  Status GetRemoteCacheDesc(uint64_t remote_cluster_id, int64_t cache_id, CacheDesc& cache_desc);

  // AllocateCache for a layer built on this library that needs caches of
  // its own (the Python module's key directory): the id is
  // kLibraryCacheIdBase or above, never one of the user ids AllocateCache
  // and RegisterKvCache hand out (1, 2, 3, ... as the original's), so a
  // peer naming a user cache id never reaches it. DeallocateCache frees it.
  static constexpr int64_t kLibraryCacheIdBase = int64_t{1} << 62;
  Status AllocateLibraryCache(const CacheDesc& cache_desc, Cache& cache);
  // RegisterKvCache with an id from the same range (the Python module's
  // staging for swap_blocks and cache-to-blocks pulls); UnregisterKvCache
  // forgets it.
  Status RegisterLibraryCache(const CacheDesc& cache_desc, const std::vector<uint64_t>& addrs, int64_t& cache_id);
  // The data path a linked cluster uses ("tcp", "shm", ...); "" if not
  // linked. The string is static.
  const char* GetLinkTransport(uint64_t remote_cluster_id) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llm_datadist

#endif  // LLM_DATADIST_LLM_DATADIST_H_
