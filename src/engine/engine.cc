#include "engine/engine.h"

#include <future>

#include "common/logging.h"
#include "common/random.h"

namespace lldd {

Engine::Engine(uint64_t cluster_id, llm_datadist::LlmRole role)
    : cluster_id_(cluster_id), instance_id_(RandomU64()), role_(role) {}

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
  caches_.set_device_id(options_.device_id);
  LDD_RETURN_IF_ERROR(transports_.Start(MakeTransportConfig(), options_.backend, regions_));
  if (options_.listen) {
    Result r = StartServing();
    if (!r.ok()) {
      transports_.Stop();
      return r;
    }
  }
  initialized_ = true;
  LDD_LOG(Info) << "cluster " << cluster_id_ << " initialized as "
                << (options_.listen ? Msg("server on port ", listen_port()) : std::string("client")) << ", backend "
                << options_.backend << ", wait time " << options_.sync_wait_ms << " ms";
  return Result::Ok();
}

Result Engine::StartServing() {
  return acceptor_.Start(options_.listen_host, options_.listen_port, threads_,
                         [this](std::shared_ptr<Socket> socket, const std::string& peer, uint64_t request_id,
                                const Hello& hello) { OnHello(std::move(socket), peer, request_id, hello); });
}

void Engine::StopServing() { acceptor_.Stop(); }

void Engine::CloseEverything() {
  std::vector<LinkPtr> links;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    for (auto& [id, link] : links_) links.push_back(link);
  }
  for (auto& link : links) link->Close("finalized");
}

void Engine::Finalize() {
  stopping_ = true;
  StopServing();
  CloseEverything();
  std::unique_lock<std::shared_mutex> lock(lifecycle_mu_);
  StopServing();      // a SetRole that was in flight may have started it
  CloseEverything();  // links made by calls that were in flight
  threads_.JoinAll();
  {
    std::lock_guard<std::mutex> links_lock(links_mu_);
    links_.clear();
  }
  caches_.Clear();
  transports_.Stop();
  initialized_ = false;
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
    std::lock_guard<std::mutex> links_lock(links_mu_);
    for (auto& [id, link] : links_)
      if (!link->closed())
        return Result(llm_datadist::LLM_EXIST_LINK, Msg("cluster ", id, " is still linked; unlink it first"));
  }
  EngineOptions next = options_;
  LDD_RETURN_IF_ERROR(ParseListenOption(options, &next));
  StopServing();
  threads_.JoinAll();
  {
    std::lock_guard<std::mutex> links_lock(links_mu_);
    links_.clear();
  }
  options_.listen = next.listen;
  options_.listen_host = next.listen_host;
  options_.listen_port = next.listen_port;
  role_ = role;  // before serving: new links learn the new role
  if (options_.listen) LDD_RETURN_IF_ERROR(StartServing());
  return Result::Ok();
}

void Engine::RevokeFromPeers(const std::vector<uint64_t>& region_ids) {
  std::vector<std::pair<uint64_t, std::shared_ptr<Endpoint>>> endpoints;
  {
    std::lock_guard<std::mutex> lock(links_mu_);
    for (auto& [id, link] : links_)
      if (!link->closed())
        for (const auto& path : link->paths()) endpoints.emplace_back(id, path.endpoint);
  }
  // A peer that does not confirm in time is hung or gone; what it mapped
  // keeps the memory alive for it, so our freeing it cannot hurt it.
  const Deadline deadline = Deadline::AfterMillis(2000);
  std::vector<std::future<Result>> pending;
  for (auto& [id, endpoint] : endpoints)
    pending.push_back(std::async(std::launch::async, [&, e = endpoint] { return e->Revoke(region_ids, deadline); }));
  for (size_t i = 0; i < pending.size(); ++i) {
    Result r = pending[i].get();
    if (!r.ok())
      LDD_LOG(Warn) << "cluster " << endpoints[i].first << " did not confirm a revocation: " << r.message();
  }
}

const char* Engine::LinkTransport(uint64_t remote_cluster_id) {
  LinkPtr link;
  if (!FindLink(remote_cluster_id, &link).ok()) return "";
  return link->primary_path();
}

std::shared_ptr<const LocalCache> Engine::FindCache(int64_t cache_id) const { return caches_.Find(cache_id); }

Result Engine::AllocateCache(const llm_datadist::CacheDesc& desc, llm_datadist::Cache& cache) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Allocate(desc, &cache);
}

Result Engine::DeallocateCache(int64_t cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Remove(cache_id, true, [this](const std::vector<uint64_t>& ids) { RevokeFromPeers(ids); });
}

Result Engine::RegisterKvCache(const llm_datadist::CacheDesc& desc, const std::vector<uint64_t>& addrs,
                               int64_t& cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Register(desc, addrs, &cache_id);
}

Result Engine::UnregisterKvCache(int64_t cache_id) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  return caches_.Remove(cache_id, false, [this](const std::vector<uint64_t>& ids) { RevokeFromPeers(ids); });
}

}  // namespace lldd
