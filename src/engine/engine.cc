#include "engine/engine.h"

#include <future>

#include "common/logging.h"
#include "common/random.h"
#include "metrics/prometheus.h"

namespace lldd {

namespace {
// Workers for asynchronous requests (each runs one transfer at a time: a
// request, or several queued ones joined, itself striped over the link's
// connections by the data path), and the outstanding handles at most.
constexpr uint32_t kAsyncThreads = 4;
constexpr size_t kMaxAsyncRequests = 65536;
}  // namespace

Engine::Engine(uint64_t cluster_id, llm_datadist::LlmRole role)
    : cluster_id_(cluster_id), instance_id_(RandomU64()), role_(role), transfers_(kAsyncThreads, kMaxAsyncRequests) {
  ops_runner_ = std::make_shared<const std::function<Result(const std::vector<OpsTransfer>&, Deadline)>>(
      [this](const std::vector<OpsTransfer>& groups, Deadline deadline) {
        for (const OpsTransfer& t : groups) LDD_RETURN_IF_ERROR(TransferOps(t, deadline));
        return Result::Ok();
      });
  ServeAddressLookups();
}

Engine::~Engine() { Finalize(); }

Result Engine::CheckInitialized() const {
  if (!initialized_ || stopping_) return Result::Failed("LlmDataDist is not initialized (call Initialize first)");
  return Result::Ok();
}

TransportConfig Engine::MakeTransportConfig() const {
  TransportConfig c;
  c.cluster_id = cluster_id_;
  c.connections = options_.tcp_connections;
  c.copy_threads = options_.copy_threads;
  c.device_id = options_.device_id;
  c.sync_wait_ms = options_.sync_wait_ms;
  c.backend = options_.backend;
  return c;
}

Result Engine::Initialize(const OptionMap& options) {
  std::unique_lock<std::shared_mutex> lock(lifecycle_mu_);
  if (initialized_) return Result::Failed("already initialized; call Finalize before initializing again");
  EngineOptions parsed;
  LDD_RETURN_IF_ERROR(ParseOptions(options, &parsed));
  options_ = parsed;
  stopping_ = false;
  transfers_.Start();
  caches_.set_device_id(options_.device_id);
  LDD_RETURN_IF_ERROR(caches_.SetPools(options_.device_pool, options_.host_pool));
  LDD_RETURN_IF_ERROR(transports_.Start(MakeTransportConfig(), options_.backend, regions_));
  if (options_.listen) {
    Result r = StartServing();
    if (!r.ok()) {
      transports_.Stop();
      return r;
    }
  }
  metrics_.max_links = options_.max_links;
  if (options_.metrics_port != 0) {
    Result r = exporter_.Start(options_.metrics_host, options_.metrics_port,
                               [this] { return metrics::RenderPrometheus(GetStats(), cluster_id_); });
    if (!r.ok()) {
      StopServing();
      threads_.JoinAll();
      transports_.Stop();
      return r.WithContext(kOptionMetricsPort);
    }
  }
  if (Result r = StartDirectory(); !r.ok()) {
    exporter_.Stop();
    StopServing();
    threads_.JoinAll();
    transports_.Stop();
    return r;
  }
  initialized_ = true;
  LDD_LOG(Info) << "cluster " << cluster_id_ << " initialized as "
                << (options_.listen ? Msg("server on port ", listen_port()) : std::string("client")) << ", backend "
                << options_.backend << ", wait time " << options_.sync_wait_ms << " ms";
  return Result::Ok();
}

Result Engine::StartServing() {
  return acceptor_.Start(
      options_.listen_host, options_.listen_port, threads_,
      [this](std::shared_ptr<Socket> socket, const std::string& peer, uint64_t request_id, const Hello& hello) {
        OnHello(std::move(socket), peer, request_id, hello);
      },
      &metrics_);
}

void Engine::StopServing() { acceptor_.Stop(); }

void Engine::CloseEverything() {
  std::vector<LinkPtr> links;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    for (auto& [id, link] : links_) links.push_back(link);
  }
  for (auto& link : links) link->Close("finalized");
}

void Engine::Finalize() {
  stopping_ = true;
  StopServing();
  CloseEverything();
  // Links closed: running requests fail at once; queued ones fail here.
  transfers_.Stop();
  std::unique_lock<std::shared_mutex> lock(lifecycle_mu_);
  StopDirectory();    // first: peers learn of our departure at once
  StopServing();      // a SetRole that was in flight may have started it
  CloseEverything();  // links made by calls that were in flight
  threads_.JoinAll();
  {
    std::lock_guard<std::shared_mutex> links_lock(links_mu_);
    links_.clear();
    links_version_.fetch_add(1, std::memory_order_release);
  }
  caches_.Clear();
  transports_.Stop();
  caches_.DropQuarantine();
  caches_.DropPools();
  exporter_.Stop();
  metrics_.ForgetPeers();
  initialized_ = false;
}

llm_datadist::LlmDataDist::Stats Engine::GetStats() {
  llm_datadist::LlmDataDist::Stats s = metrics_.Snapshot();
  std::lock_guard<std::shared_mutex> lock(links_mu_);
  s.links = 0;
  for (const auto& [id, link] : links_) s.links += link->closed() ? 0 : 1;
  return s;
}

Result Engine::SetRole(llm_datadist::LlmRole role, const OptionMap& options) {
  std::unique_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  // The original's C++ SetRole never checks llm.EnableSwitchRole (its own
  // role-switch samples never set it), so neither do we.
  if (role != llm_datadist::LlmRole::kPrompt && role != llm_datadist::LlmRole::kDecoder &&
      role != llm_datadist::LlmRole::kMix)
    return Result::ParamInvalid(Msg("role ", static_cast<int>(role), " is not a valid LlmRole"));
  {
    std::lock_guard<std::shared_mutex> links_lock(links_mu_);
    for (auto& [id, link] : links_)
      if (!link->closed())
        return Result(llm_datadist::LLM_EXIST_LINK, Msg("cluster ", id, " is still linked; unlink it first"));
  }
  EngineOptions next = options_;
  LDD_RETURN_IF_ERROR(ParseListenOption(options, &next));
  StopServing();
  threads_.JoinAll();
  {
    std::lock_guard<std::shared_mutex> links_lock(links_mu_);
    links_.clear();
    links_version_.fetch_add(1, std::memory_order_release);
  }
  options_.listen = next.listen;
  options_.listen_host = next.listen_host;
  options_.listen_port = next.listen_port;
  role_ = role;  // before serving: new links learn the new role
  Result serving = options_.listen ? StartServing() : Result::Ok();
  // The entry follows what this instance now is, listening or not.
  if (directory_) directory_->Update(SelfEntry(), Deadline::AfterMillis(1000));
  return serving;
}

Result Engine::RevokeFromPeers(const std::vector<uint64_t>& region_ids, uint32_t kind, bool allocated) {
  struct Target {
    LinkPtr link;
    LinkPath path;
  };
  std::vector<Target> targets;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    for (auto& [id, link] : links_)
      if (!link->closed())
        for (const auto& path : link->paths()) targets.push_back({link, path});
  }
  // The peer waits up to kPeerRevokeWaitMs for its own transfers; we wait
  // for its answer a little longer (transport/endpoint.h).
  const Deadline deadline = Deadline::AfterMillis(kRevokeConfirmMs);
  std::vector<std::future<Result>> pending;
  for (const Target& t : targets)
    pending.push_back(
        std::async(std::launch::async, [&, e = t.path.endpoint] { return e->Revoke(region_ids, deadline); }));
  Result result = Result::Ok();
  for (size_t i = 0; i < pending.size(); ++i) {
    Result r = pending[i].get();
    if (r.ok()) continue;
    const Target& t = targets[i];
    const uint64_t cluster = t.link->remote_cluster_id();
    if (!t.path.transport->RevokeNeedsPeer(kind, allocated)) {
      // Hung or gone; what it mapped keeps the memory alive for it, and
      // nothing else of it reaches the memory but through us.
      LDD_LOG(Warn) << "cluster " << cluster << " did not confirm a revocation: " << r.message();
      continue;
    }
    // It may still write this memory through a path we cannot close for
    // it: end the link (no new access can start) and let the caller keep
    // the memory.
    LDD_LOG(Error) << "cluster " << cluster << " did not confirm over " << t.path.transport->name()
                   << " that it stopped using memory it could still write; closing the link: " << r.message();
    t.link->MarkBroken("it did not confirm a revocation");
    if (result.ok())
      result = Result::Timeout(Msg("cluster ", cluster, " did not confirm within ", kRevokeConfirmMs,
                                   " ms that it stopped using this memory over ", t.path.transport->name(),
                                   " (", r.message(), "); its link was closed"));
  }
  return result;
}

const char* Engine::LinkTransport(uint64_t remote_cluster_id) {
  LinkPtr link;
  if (!FindLink(remote_cluster_id, &link).ok()) return "";
  return link->primary_path();
}

std::shared_ptr<const LocalCache> Engine::FindCache(int64_t cache_id) const { return caches_.Find(cache_id); }

Result Engine::AllocateCache(const llm_datadist::CacheDesc& desc, llm_datadist::Cache& cache, bool library) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Allocate(desc, &cache, library);
}

Result Engine::DeallocateCache(int64_t cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Remove(cache_id, true, [this](const std::vector<uint64_t>& ids, uint32_t kind, bool allocated) {
    return RevokeFromPeers(ids, kind, allocated);
  });
}

Result Engine::RegisterKvCache(const llm_datadist::CacheDesc& desc, const std::vector<uint64_t>& addrs,
                               int64_t& cache_id, bool library) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Register(desc, addrs, &cache_id, library);
}

Result Engine::LocalCacheDesc(int64_t cache_id, llm_datadist::CacheDesc* desc) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  auto cache = caches_.Find(cache_id);
  if (!cache) return Result(llm_datadist::LLM_KV_CACHE_NOT_EXIST, Msg("no local cache ", cache_id));
  *desc = cache->desc;
  return Result::Ok();
}

Result Engine::UnregisterKvCache(int64_t cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Remove(cache_id, false, [this](const std::vector<uint64_t>& ids, uint32_t kind, bool allocated) {
    return RevokeFromPeers(ids, kind, allocated);
  });
}

}  // namespace lldd
