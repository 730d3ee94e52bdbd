// The native half of the `llm_datadist` Python package: a thin pybind11 layer
// over the public C++ API (include/llm_datadist/*.h) and nothing else.
//
// Every call that may move data or wait on a peer (link, unlink, pull, push,
// copy, allocate, register, finalize) releases the GIL, so other Python
// threads run while it waits. Results come back as plain tuples; the Python
// package (llm_datadist/*.py) turns them into the vendor's types and raises
// LLMException with the status and GetLastErrorMessage() on failure.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "llm_datadist/llm_datadist.h"

namespace py = pybind11;
using namespace llm_datadist;

namespace {

using Options = std::map<std::string, std::string>;
using Release = py::call_guard<py::gil_scoped_release>;
// (remote_cluster_id, [(ip, port)] local, [(ip, port)] remote)
using PyCluster = std::tuple<uint64_t, std::vector<std::pair<std::string, uint16_t>>,
                             std::vector<std::pair<std::string, uint16_t>>>;
// (src_first, src_last, dst_first, dst_last, tensor_num_per_layer)
using PyExt = std::tuple<int32_t, int32_t, int32_t, int32_t, uint32_t>;
using PyRange = std::tuple<uint32_t, uint64_t, uint64_t, int64_t, uint32_t, uint64_t>;

std::map<AscendString, AscendString> ToOptions(const Options& in) {
  std::map<AscendString, AscendString> out;
  for (const auto& kv : in) out.emplace(AscendString(kv.first.c_str()), AscendString(kv.second.c_str()));
  return out;
}

std::vector<ClusterInfo> ToClusters(const std::vector<PyCluster>& in) {
  std::vector<ClusterInfo> out;
  for (const auto& c : in) {
    ClusterInfo info;
    info.remote_cluster_id = std::get<0>(c);
    for (const auto& ip : std::get<1>(c)) info.local_ip_infos.push_back(IpInfo{AscendString(ip.first.c_str()), ip.second});
    for (const auto& ip : std::get<2>(c)) info.remote_ip_infos.push_back(IpInfo{AscendString(ip.first.c_str()), ip.second});
    out.push_back(std::move(info));
  }
  return out;
}

CacheDesc ToDesc(uint32_t placement, uint32_t num_tensors, int32_t data_type, const std::vector<int64_t>& shape) {
  CacheDesc d;
  d.placement = static_cast<CachePlacement>(placement);
  d.num_tensors = num_tensors;
  d.data_type = static_cast<DataType>(data_type);
  d.shape = shape;
  return d;
}

Cache LocalCache(int64_t cache_id) {
  Cache c;
  c.cache_id = cache_id;
  return c;
}

KvCacheExtParam ToExt(const PyExt& e) {
  KvCacheExtParam p;
  p.src_layer_range = {std::get<0>(e), std::get<1>(e)};
  p.dst_layer_range = {std::get<2>(e), std::get<3>(e)};
  p.tensor_num_per_layer = static_cast<uint8_t>(std::get<4>(e));
  return p;
}

// One C++ instance. Held by the Python LLMDataDist; close() (finalize) is
// idempotent and the destructor runs it too.
// LlmDataDist::Stats as plain dicts (keys as the struct's field names).
py::dict TransfersToDict(const LlmDataDist::Stats::Transfers& t) {
  auto latency = [](const LlmDataDist::Stats::Latency& h) {
    py::dict d;
    d["upper_bounds_seconds"] = h.upper_bounds_seconds;
    d["counts"] = h.counts;
    d["count"] = h.count;
    d["sum_seconds"] = h.sum_seconds;
    return d;
  };
  py::dict d;
  d["pull_bytes"] = t.pull_bytes;
  d["push_bytes"] = t.push_bytes;
  d["pull_calls"] = t.pull_calls;
  d["push_calls"] = t.push_calls;
  d["failures"] = t.failures;
  d["pull_latency"] = latency(t.pull_latency);
  d["push_latency"] = latency(t.push_latency);
  d["in_flight"] = t.in_flight;
  return d;
}

py::dict StatsToDict(const LlmDataDist::Stats& s) {
  py::dict d, transports, peers;
  for (const auto& [name, t] : s.transports) transports[py::str(name)] = TransfersToDict(t);
  for (const auto& [id, t] : s.peers) peers[py::int_(id)] = TransfersToDict(t);
  d["transports"] = transports;
  d["peers"] = peers;
  d["links"] = s.links;
  d["max_links"] = s.max_links;
  d["links_initiated"] = s.links_initiated;
  d["links_accepted"] = s.links_accepted;
  d["links_closed"] = s.links_closed;
  d["links_refused"] = s.links_refused;
  d["connections_accepted"] = s.connections_accepted;
  d["handshakes_completed"] = s.handshakes_completed;
  d["handshakes_pending"] = s.handshakes_pending;
  d["handshakes_dropped_timeout"] = s.handshakes_dropped_timeout;
  d["handshakes_dropped_full"] = s.handshakes_dropped_full;
  d["handshakes_dropped_source"] = s.handshakes_dropped_source;
  d["handshakes_dropped_bad_frame"] = s.handshakes_dropped_bad_frame;
  d["in_flight"] = s.in_flight;
  return d;
}

class Engine {
 public:
  Engine(uint64_t cluster_id, int32_t role) : dd_(std::make_unique<LlmDataDist>(cluster_id, static_cast<LlmRole>(role))) {}
  ~Engine() {
    py::gil_scoped_release release;
    dd_.reset();
  }

  Status Initialize(const Options& options) { return Get().Initialize(ToOptions(options)); }
  void Finalize() {
    if (dd_) dd_->Finalize();
  }
  Status SetRole(int32_t role, const Options& options) {
    return Get().SetRole(static_cast<LlmRole>(role), ToOptions(options));
  }

  std::pair<Status, std::vector<Status>> Link(const std::vector<PyCluster>& clusters, int32_t timeout_ms) {
    std::vector<Status> rets;
    Status st = Get().LinkLlmClusters(ToClusters(clusters), rets, timeout_ms);
    return {st, rets};
  }
  std::pair<Status, std::vector<Status>> Unlink(const std::vector<PyCluster>& clusters, int32_t timeout_ms, bool force) {
    std::vector<Status> rets;
    Status st = Get().UnlinkLlmClusters(ToClusters(clusters), rets, timeout_ms, force);
    return {st, rets};
  }

  std::tuple<Status, int64_t, std::vector<uint64_t>> Allocate(uint32_t placement, uint32_t num_tensors, int32_t dt,
                                                              const std::vector<int64_t>& shape) {
    Cache cache;
    Status st = Get().AllocateCache(ToDesc(placement, num_tensors, dt, shape), cache);
    std::vector<uint64_t> addrs(cache.tensor_addrs.begin(), cache.tensor_addrs.end());
    return {st, cache.cache_id, addrs};
  }
  // The Python module's own caches (key directory, release inbox): ids from
  // LlmDataDist::kLibraryCacheIdBase, so user cache ids start at 1.
  std::tuple<Status, int64_t, std::vector<uint64_t>> AllocateLibrary(uint32_t placement, uint32_t num_tensors, int32_t dt,
                                                                     const std::vector<int64_t>& shape) {
    Cache cache;
    Status st = Get().AllocateLibraryCache(ToDesc(placement, num_tensors, dt, shape), cache);
    std::vector<uint64_t> addrs(cache.tensor_addrs.begin(), cache.tensor_addrs.end());
    return {st, cache.cache_id, addrs};
  }
  Status Deallocate(int64_t id) { return Get().DeallocateCache(id); }
  std::pair<Status, int64_t> Register(uint32_t placement, uint32_t num_tensors, int32_t dt, const std::vector<int64_t>& shape,
                                      const std::vector<uint64_t>& addrs) {
    int64_t id = -1;
    Status st = Get().RegisterKvCache(ToDesc(placement, num_tensors, dt, shape), addrs, RegisterCfg{}, id);
    return {st, id};
  }
  std::pair<Status, int64_t> RegisterLibrary(uint32_t placement, uint32_t num_tensors, int32_t dt,
                                             const std::vector<int64_t>& shape, const std::vector<uint64_t>& addrs) {
    int64_t id = -1;
    Status st = Get().RegisterLibraryCache(ToDesc(placement, num_tensors, dt, shape), addrs, id);
    return {st, id};
  }
  Status Unregister(int64_t id) { return Get().UnregisterKvCache(id); }

  Status PullCache(uint64_t cluster, int64_t src_id, uint32_t src_batch, int64_t dst_id, uint32_t dst_batch, int64_t size,
                   const PyExt& ext) {
    return Get().PullKvCache(CacheIndex{cluster, src_id, src_batch}, LocalCache(dst_id), dst_batch, size, ToExt(ext));
  }
  Status PullBlocks(uint64_t cluster, int64_t src_id, int64_t dst_id, const std::vector<uint64_t>& src_blocks,
                    const std::vector<uint64_t>& dst_blocks, const PyExt& ext) {
    return Get().PullKvBlocks(CacheIndex{cluster, src_id, 0}, LocalCache(dst_id), src_blocks, dst_blocks, ToExt(ext));
  }
  Status PushCache(int64_t src_id, uint32_t src_batch, uint64_t cluster, int64_t dst_id, uint32_t dst_batch, int64_t size,
                   const PyExt& ext) {
    return Get().PushKvCache(LocalCache(src_id), CacheIndex{cluster, dst_id, dst_batch}, src_batch, size, ToExt(ext));
  }
  Status PushBlocks(int64_t src_id, uint64_t cluster, int64_t dst_id, const std::vector<uint64_t>& src_blocks,
                    const std::vector<uint64_t>& dst_blocks, const PyExt& ext) {
    return Get().PushKvBlocks(LocalCache(src_id), CacheIndex{cluster, dst_id, 0}, src_blocks, dst_blocks, ToExt(ext));
  }
  Status CopyCache(int64_t src_id, int64_t dst_id, uint32_t src_batch, uint32_t dst_batch, uint64_t offset, int64_t size) {
    return Get().CopyKvCache(LocalCache(src_id), LocalCache(dst_id), src_batch, dst_batch, offset, size);
  }
  Status CopyBlocks(int64_t src_id, int64_t dst_id, const std::vector<uint64_t>& src_blocks,
                    const std::vector<std::vector<uint64_t>>& dst_lists) {
    return Get().CopyKvBlocks(LocalCache(src_id), LocalCache(dst_id), src_blocks, dst_lists);
  }

  // ranges: (src_tensor, src_offset, length, dst_cache_id, dst_tensor, dst_offset); dst_cache_id 0 names a
  // peer address in dst_offset (LlmDataDist::PushKvRanges).
  Status PushRanges(int64_t src_id, uint64_t cluster, const std::vector<PyRange>& ranges) {
    std::vector<LlmDataDist::RangeCopy> copies;
    copies.reserve(ranges.size());
    for (const auto& r : ranges)
      copies.push_back({std::get<0>(r), std::get<1>(r), std::get<2>(r), std::get<3>(r), std::get<4>(r), std::get<5>(r)});
    return Get().PushKvRanges(LocalCache(src_id), cluster, copies);
  }
  // (status, placement, num_tensors, data_type, shape) of a linked peer's cache.
  std::tuple<Status, uint32_t, uint32_t, int32_t, std::vector<int64_t>> RemoteCacheDesc(uint64_t cluster, int64_t id) {
    CacheDesc d;
    Status st = Get().GetRemoteCacheDesc(cluster, id, d);
    return {st, static_cast<uint32_t>(d.placement), d.num_tensors, static_cast<int32_t>(d.data_type), d.shape};
  }

  uint16_t ListenPort() const { return dd_ ? dd_->GetListenPort() : 0; }
  py::dict Stats() const { return dd_ ? StatsToDict(dd_->GetStats()) : py::dict(); }
  std::string LinkTransport(uint64_t cluster) const {
    if (!dd_) return "";
    const char* t = dd_->GetLinkTransport(cluster);
    return t ? t : "";
  }

 private:
  LlmDataDist& Get() {
    if (!dd_) throw std::runtime_error("llm_datadist engine already destroyed");
    return *dd_;
  }
  std::unique_ptr<LlmDataDist> dd_;
};

}  // namespace

PYBIND11_MODULE(_llm_datadist, m) {
  m.doc() = "Native bindings of llm-datadist (use the llm_datadist package, not this module)";

  py::class_<Engine>(m, "Engine")
      .def(py::init<uint64_t, int32_t>())
      .def("initialize", &Engine::Initialize, Release())
      .def("finalize", &Engine::Finalize, Release())
      .def("set_role", &Engine::SetRole, Release())
      .def("link", &Engine::Link, Release())
      .def("unlink", &Engine::Unlink, Release())
      .def("allocate", &Engine::Allocate, Release())
      .def("allocate_library", &Engine::AllocateLibrary, Release())
      .def("deallocate", &Engine::Deallocate, Release())
      .def("register", &Engine::Register, Release())
      .def("register_library", &Engine::RegisterLibrary, Release())
      .def("unregister", &Engine::Unregister, Release())
      .def("pull_cache", &Engine::PullCache, Release())
      .def("pull_blocks", &Engine::PullBlocks, Release())
      .def("push_cache", &Engine::PushCache, Release())
      .def("push_blocks", &Engine::PushBlocks, Release())
      .def("copy_cache", &Engine::CopyCache, Release())
      .def("copy_blocks", &Engine::CopyBlocks, Release())
      .def("push_ranges", &Engine::PushRanges, Release())
      .def("remote_cache_desc", &Engine::RemoteCacheDesc, Release())
      .def("listen_port", &Engine::ListenPort)
      .def("link_transport", &Engine::LinkTransport)
      .def("stats", &Engine::Stats);

  // The last-error message is per thread: read it on the thread that failed,
  // right after the failing call (the Python layer does).
  m.def("last_error_message", []() { return std::string(LlmDataDist::GetLastErrorMessage()); });
  m.def("status_name", [](uint32_t s) { return std::string(LlmDataDist::GetStatusName(s)); });

  // A writable buffer over memory the library owns (an allocated cache's
  // tensor); numpy/torch wrap it without copying.
  m.def("memory_view", [](uint64_t addr, py::ssize_t nbytes) {
    return py::memoryview::from_memory(reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), nbytes, false);
  });

  py::dict codes;
  codes["LLM_SUCCESS"] = LLM_SUCCESS;
  codes["LLM_FAILED"] = LLM_FAILED;
  codes["LLM_WAIT_PROC_TIMEOUT"] = LLM_WAIT_PROC_TIMEOUT;
  codes["LLM_KV_CACHE_NOT_EXIST"] = LLM_KV_CACHE_NOT_EXIST;
  codes["LLM_REPEAT_REQUEST"] = LLM_REPEAT_REQUEST;
  codes["LLM_REQUEST_ALREADY_COMPLETED"] = LLM_REQUEST_ALREADY_COMPLETED;
  codes["LLM_PARAM_INVALID"] = LLM_PARAM_INVALID;
  codes["LLM_ENGINE_FINALIZED"] = LLM_ENGINE_FINALIZED;
  codes["LLM_NOT_YET_LINK"] = LLM_NOT_YET_LINK;
  codes["LLM_ALREADY_LINK"] = LLM_ALREADY_LINK;
  codes["LLM_LINK_FAILED"] = LLM_LINK_FAILED;
  codes["LLM_UNLINK_FAILED"] = LLM_UNLINK_FAILED;
  codes["LLM_NOTIFY_PROMPT_UNLINK_FAILED"] = LLM_NOTIFY_PROMPT_UNLINK_FAILED;
  codes["LLM_CLUSTER_NUM_EXCEED_LIMIT"] = LLM_CLUSTER_NUM_EXCEED_LIMIT;
  codes["LLM_PROCESSING_LINK"] = LLM_PROCESSING_LINK;
  codes["LLM_DEVICE_OUT_OF_MEMORY"] = LLM_DEVICE_OUT_OF_MEMORY;
  codes["LLM_PREFIX_ALREADY_EXIST"] = LLM_PREFIX_ALREADY_EXIST;
  codes["LLM_PREFIX_NOT_EXIST"] = LLM_PREFIX_NOT_EXIST;
  codes["LLM_SEQ_LEN_OVER_LIMIT"] = LLM_SEQ_LEN_OVER_LIMIT;
  codes["LLM_NO_FREE_BLOCK"] = LLM_NO_FREE_BLOCK;
  codes["LLM_BLOCKS_OUT_OF_MEMORY"] = LLM_BLOCKS_OUT_OF_MEMORY;
  codes["LLM_CACHE_INCOMPATIBLE"] = LLM_CACHE_INCOMPATIBLE;
  codes["LLM_CACHE_KEY_ALREADY_EXIST"] = LLM_CACHE_KEY_ALREADY_EXIST;
  codes["LLM_COPY_CACHE_FAILED"] = LLM_COPY_CACHE_FAILED;
  codes["LLM_CACHE_ID_ALREADY_EXIST"] = LLM_CACHE_ID_ALREADY_EXIST;
  codes["LLM_EXIST_LINK"] = LLM_EXIST_LINK;
  codes["LLM_FEATURE_NOT_ENABLED"] = LLM_FEATURE_NOT_ENABLED;
  codes["LLM_TIMEOUT"] = LLM_TIMEOUT;
  codes["LLM_LINK_BUSY"] = LLM_LINK_BUSY;
  codes["LLM_OUT_OF_MEMORY"] = LLM_OUT_OF_MEMORY;
  m.attr("status_codes") = codes;
  m.attr("library_cache_id_base") = LlmDataDist::kLibraryCacheIdBase;

  py::dict opts;
  opts["OPTION_LISTEN_IP_INFO"] = OPTION_LISTEN_IP_INFO;
  opts["OPTION_DEVICE_ID"] = OPTION_DEVICE_ID;
  opts["OPTION_SYNC_CACHE_WAIT_TIME"] = OPTION_SYNC_CACHE_WAIT_TIME;
  opts["OPTION_BUF_POOL_CFG"] = OPTION_BUF_POOL_CFG;
  opts["OPTION_ENABLE_SET_ROLE"] = OPTION_ENABLE_SET_ROLE;
  opts["OPTION_LOCAL_COMM_RES"] = OPTION_LOCAL_COMM_RES;
  opts["OPTION_TRANSFER_BACKEND"] = OPTION_TRANSFER_BACKEND;
  m.attr("option_keys") = opts;
}
