#include "hixl/hixl_engine.h"

#include <algorithm>

#include "common/logging.h"
#include "common/random.h"
#include "common/wire.h"
#include "engine/ops_job.h"
#include "engine/spare_transfers.h"
#include "hixl/hixl_options.h"
#include "memory/line_pool.h"

namespace lldd::hixl_impl {
namespace {

using llm_datadist::LLM_SUCCESS;
using ::hixl::TransferOpDesc;

Result NotInitialized() { return Result::Failed("Hixl is not initialized (call Initialize first)"); }

}  // namespace

Result HixlEngine::CheckInitialized() const { return engine_ ? Result::Ok() : NotInitialized(); }

Result HixlEngine::Initialize(const std::string& local_engine, const OptionMap& options) {
  std::unique_lock<std::shared_mutex> lock(life_mu_);
  if (engine_) return Result::Failed("already initialized; call Finalize before initializing again");
  EngineName name;
  LDD_RETURN_IF_ERROR(ParseEngineName(local_engine, &name));
  HixlOptions parsed;
  LDD_RETURN_IF_ERROR(ParseHixlOptions(options, &parsed));
  if (name.listens()) parsed.engine[llm_datadist::OPTION_LISTEN_IP_INFO] = name.canonical.c_str();
  // A client-only engine cannot be dialled, so its id only has to differ
  // from every other engine's: a random one (never 0).
  const uint64_t cluster_id = name.listens() ? ClusterIdOf(name.canonical) : (RandomU64() | 1);
  auto engine = std::make_unique<Engine>(cluster_id, llm_datadist::LlmRole::kMix);
  engine->SetFrontEndHandler(kFrontEndName, [this](uint64_t from, const std::vector<uint8_t>& request,
                                                   std::vector<uint8_t>* reply) { return ServeFrontEnd(from, request, reply); });
  Result r = engine->Initialize(parsed.engine);
  if (!r.ok()) return r.WithContext(Msg("engine ", name.canonical));
  engine_ = std::move(engine);
  self_ = name;
  auto_connect_ = parsed.auto_connect;
  connect_pool_ = std::make_unique<ConnectPool>(parsed.connect_threads, parsed.connect_queue);
  async_timeout_ms_ = parsed.async_timeout_ms;
  LDD_LOG(Info) << "hixl engine " << name.canonical << (name.listens() ? " listening" : " (client only)") << ";"
                << parsed.summary;
  return Result::Ok();
}

void HixlEngine::Finalize() {
  // Before the lock: running connection tasks take it shared.
  {
    std::shared_lock<std::shared_mutex> lock(life_mu_);
    if (connect_pool_)
      connect_pool_->Stop([this](const std::string& key) { SetAsyncStatus(key, ::hixl::AsyncConnectStatus::NOT_CONNECT); });
  }
  std::unique_lock<std::shared_mutex> lock(life_mu_);
  if (!engine_) return;
  connect_pool_.reset();
  {
    // No request that fails from here on tries to link again.
    std::lock_guard<std::mutex> peers_lock(peers_mu_);
    for (auto& [name, peer] : peers_) peer->gone = true;
    peers_.clear();
  }
  // Closes the links (running requests fail at once), then fails what is
  // queued and waits for the workers.
  engine_->Finalize();
  engine_.reset();
  {
    std::lock_guard<std::mutex> async_lock(async_mu_);
    async_.clear();
  }
  {
    std::lock_guard<std::mutex> notify_lock(notify_mu_);
    notifies_.clear();
    pending_notifies_.clear();
  }
  std::lock_guard<std::mutex> regs_lock(regs_mu_);
  local_.Clear();
}

Result HixlEngine::ServeFrontEnd(uint64_t remote_cluster_id, const std::vector<uint8_t>& request,
                                 std::vector<uint8_t>* reply) {
  if (!request.empty() && request[0] == kNotifyRequest) return ReceiveNotify(remote_cluster_id, request);
  if (request.size() != 1 || request[0] != kListMemRequest) return Result::ParamInvalid("unknown hixl request");
  std::lock_guard<std::mutex> lock(regs_mu_);
  *reply = EncodeMemList(local_.All());
  return Result::Ok();
}

Result HixlEngine::ReceiveNotify(uint64_t remote_cluster_id, const std::vector<uint8_t>& request) {
  WireReader r(request);
  (void)r.U8();
  Notification n;
  n.name = r.Str(kMaxNotifyText);
  n.message = r.Str(kMaxNotifyText);
  if (!r.done()) return Result::ParamInvalid("malformed notification");
  std::lock_guard<std::mutex> lock(notify_mu_);
  size_t& pending = pending_notifies_[remote_cluster_id];
  if (pending >= kMaxPendingNotifies)
    return Result::OutOfMemory(Msg(kMaxPendingNotifies, " notifications of this connection are not consumed yet"));
  ++pending;
  notifies_.emplace_back(remote_cluster_id, std::move(n));
  return Result::Ok();
}

Result HixlEngine::GetNotifies(std::vector<Notification>* out) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  std::lock_guard<std::mutex> notify_lock(notify_mu_);
  out->clear();
  for (auto& [from, n] : notifies_) out->push_back(std::move(n));
  notifies_.clear();
  pending_notifies_.clear();
  return Result::Ok();
}

Result HixlEngine::SendNotify(const std::string& remote_engine, const Notification& notify, int32_t timeout_ms) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  if (notify.name.size() > kMaxNotifyText || notify.message.size() > kMaxNotifyText)
    return Result::ParamInvalid(Msg("notify.name and notify.notify_msg may hold at most ", kMaxNotifyText,
                                    " characters (", notify.name.size(), " and ", notify.message.size(), " given)"));
  const Deadline deadline = Deadline::AfterMillis(timeout_ms);
  PeerPtr peer;
  LDD_RETURN_IF_ERROR(FindPeer(remote_engine, deadline, &peer));
  // Ordered after the transfers sent before it: synchronous ones have
  // landed already; asynchronous ones are waited for here.
  LDD_RETURN_IF_ERROR(engine_->transfers().WaitPeer(peer->cluster_id, deadline));
  WireWriter w;
  w.U8(kNotifyRequest);
  w.Str(notify.name);
  w.Str(notify.message);
  std::vector<uint8_t> reply;
  return WithRelink(*peer, deadline, [&] {
    return engine_->CallFrontEnd(peer->cluster_id, kFrontEndName, w.buffer(), deadline, &reply);
  });
}

Result HixlEngine::RegisterMem(uint64_t addr, uint64_t len, ::hixl::MemType type, int64_t* handle) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (type != ::hixl::MEM_DEVICE && type != ::hixl::MEM_HOST)
    return Result::ParamInvalid(Msg("memory type ", static_cast<int>(type), " is neither MEM_DEVICE nor MEM_HOST"));
  if (addr == 0) return Result::ParamInvalid("mem.addr is null");
  if (len == 0) return Result::ParamInvalid("mem.len is 0");
  if (len > static_cast<uint64_t>(INT64_MAX)) return Result::ParamInvalid(Msg("mem.len ", len, " is too large"));
  // One registration at a time, so that the same range twice gives one handle.
  std::lock_guard<std::mutex> regs_lock(regs_mu_);
  if (const MemEntry* e = local_.FindExact(addr, len)) {
    *handle = e->cache_id;
    return Result::Ok();
  }
  if (local_.size() >= kMaxMemEntries)
    return Result::OutOfMemory(Msg("already ", local_.size(), " registrations, the most one engine may hold"));
  llm_datadist::CacheDesc desc;
  desc.placement = type == ::hixl::MEM_DEVICE ? llm_datadist::CachePlacement::kDevice : llm_datadist::CachePlacement::kHost;
  desc.num_tensors = 1;
  desc.data_type = llm_datadist::DT_UINT8;
  desc.shape = {1, static_cast<int64_t>(len)};
  int64_t cache_id = 0;
  LDD_RETURN_IF_ERROR(engine_->RegisterKvCache(desc, {addr}, cache_id));
  auto cache = engine_->FindCache(cache_id);
  if (!cache || cache->region_ids.size() != 1) {
    (void)engine_->UnregisterKvCache(cache_id);
    return Result::Failed("the registration vanished while it was made");
  }
  MemEntry e{addr, len, cache->region_ids[0], static_cast<uint32_t>(cache->kind), cache_id};
  Result r = local_.Add(e);
  if (!r.ok()) {
    (void)engine_->UnregisterKvCache(cache_id);
    return r;
  }
  *handle = cache_id;
  return Result::Ok();
}

Result HixlEngine::DeregisterMem(int64_t handle) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  {
    std::lock_guard<std::mutex> regs_lock(regs_mu_);
    // Not ours (or deregistered already): nothing to do, as documented.
    if (!local_.RemoveByCache(handle)) return Result::Ok();
  }
  // Waits for transfers that use the memory and revokes peers' mappings.
  return engine_->UnregisterKvCache(handle);
}

Result HixlEngine::Connect(const std::string& remote_engine, int32_t timeout_ms) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  return ConnectLocked(remote_engine, Deadline::AfterMillis(timeout_ms));
}

Result HixlEngine::ConnectLocked(const std::string& remote_engine, Deadline deadline) {
  EngineName name;
  LDD_RETURN_IF_ERROR(ParseEngineName(remote_engine, &name));
  if (!name.listens())
    return Result::ParamInvalid(Msg("engine '", remote_engine, "' has no port: a client-only engine cannot be connected to"));
  if (name.canonical == self_.canonical) return Result::ParamInvalid(Msg("'", remote_engine, "' is this engine itself"));
  {
    std::lock_guard<std::mutex> lock(peers_mu_);
    if (peers_.count(name.canonical)) return Result::AlreadyLink(Msg("already connected to ", name.canonical));
  }
  auto peer = std::make_shared<Peer>();
  peer->name = name;
  peer->cluster_id = ClusterIdOf(name.canonical);
  SetRunner(peer);
  llm_datadist::ClusterInfo cluster;
  cluster.remote_cluster_id = peer->cluster_id;
  llm_datadist::IpInfo ip;
  ip.ip = name.host.c_str();
  ip.port = name.port;
  cluster.remote_ip_infos.push_back(ip);
  std::vector<Status> rets;
  const int32_t left_ms = static_cast<int32_t>(std::clamp<int64_t>(deadline.RemainingMillis(), 1, INT32_MAX));
  Result r = engine_->Link({cluster}, rets, left_ms);
  if (r.code() == llm_datadist::LLM_ALREADY_LINK) {
    // The peer dialled us first (it is a server too): share its link.
    peer->borrowed = true;
  } else if (!r.ok()) {
    // Two servers connecting to each other at the same moment: the peer
    // may refuse our link because its own one to us just arrived here.
    // If that one answers, it is our connection too.
    if (r.code() == llm_datadist::LLM_TIMEOUT || !FetchPeerMemory(*peer, deadline).ok())
      return r.WithContext(Msg("connect to ", name.canonical));
    peer->borrowed = true;
  }
  std::lock_guard<std::mutex> lock(peers_mu_);
  if (!peers_.emplace(name.canonical, peer).second) {
    // A concurrent Connect to the same engine won; ours is a duplicate.
    return Result::AlreadyLink(Msg("already connected to ", name.canonical));
  }
  return Result::Ok();
}

Result HixlEngine::Disconnect(const std::string& remote_engine, int32_t timeout_ms) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  EngineName name;
  LDD_RETURN_IF_ERROR(ParseEngineName(remote_engine, &name));
  PeerPtr peer;
  {
    std::lock_guard<std::mutex> peers_lock(peers_mu_);
    auto it = peers_.find(name.canonical);
    if (it == peers_.end()) return Result::NotYetLink(Msg("not connected to ", name.canonical));
    peer = it->second;
    peers_.erase(it);
  }
  peer->gone = true;
  engine_->transfers().FailPeer(peer->cluster_id);
  if (peer->borrowed) return Result::Ok();
  llm_datadist::ClusterInfo cluster;
  cluster.remote_cluster_id = peer->cluster_id;
  std::vector<Status> rets;
  Result r = engine_->Unlink({cluster}, rets, timeout_ms, false);
  if (r.ok() || r.code() == llm_datadist::LLM_NOT_YET_LINK) return Result::Ok();
  // The peer did not confirm (gone or hung): drop our end anyway, so that
  // a later Connect starts afresh, and say so.
  (void)engine_->Unlink({cluster}, rets, timeout_ms, true);
  return r.WithContext(Msg("disconnect from ", name.canonical));
}

void HixlEngine::SetAsyncStatus(const std::string& canonical, ::hixl::AsyncConnectStatus status) {
  std::lock_guard<std::mutex> lock(async_mu_);
  async_[canonical] = status;
}

Result HixlEngine::QueueConnectTask(const std::string& remote_engine, int32_t timeout_ms, bool connect) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  EngineName name;
  LDD_RETURN_IF_ERROR(ParseEngineName(remote_engine, &name));
  using S = ::hixl::AsyncConnectStatus;
  const std::string key = name.canonical;
  std::lock_guard<std::mutex> async_lock(async_mu_);  // the queued state is set before the task can run
  auto task = [this, key, timeout_ms, connect] {
    SetAsyncStatus(key, connect ? S::CONNECTING : S::DISCONNECTING);
    if (connect) {
      Result r = Connect(key, timeout_ms);
      SetAsyncStatus(key, r.ok() || r.code() == llm_datadist::LLM_ALREADY_LINK ? S::CONNECTED : S::CONNECT_FAILED);
      if (!r.ok()) LDD_LOG(Warn) << "ConnectAsync to " << key << ": " << r.message();
    } else {
      // Whatever the peer says, our end is gone afterwards.
      Result r = Disconnect(key, timeout_ms);
      SetAsyncStatus(key, S::NOT_CONNECT);
      if (!r.ok()) LDD_LOG(Warn) << "DisconnectAsync from " << key << ": " << r.message();
    }
  };
  LDD_RETURN_IF_ERROR(connect_pool_->Submit(key, std::move(task)));
  async_[key] = connect ? S::CONNECT_PENDING : S::DISCONNECT_PENDING;
  return Result::Ok();
}

Result HixlEngine::ConnectAsync(const std::string& remote_engine, int32_t timeout_ms) {
  return QueueConnectTask(remote_engine, timeout_ms, true);
}

Result HixlEngine::DisconnectAsync(const std::string& remote_engine, int32_t timeout_ms) {
  return QueueConnectTask(remote_engine, timeout_ms, false);
}

Result HixlEngine::AsyncStatus(const std::string& remote_engine, ::hixl::AsyncConnectStatus* status) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  EngineName name;
  LDD_RETURN_IF_ERROR(ParseEngineName(remote_engine, &name));
  std::lock_guard<std::mutex> async_lock(async_mu_);
  auto it = async_.find(name.canonical);
  *status = it == async_.end() ? ::hixl::AsyncConnectStatus::NOT_CONNECT : it->second;
  return Result::Ok();
}

Result HixlEngine::AsyncStatuses(std::map<std::string, ::hixl::AsyncConnectStatus>* statuses) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  std::lock_guard<std::mutex> async_lock(async_mu_);
  *statuses = async_;
  return Result::Ok();
}

Result HixlEngine::FindPeer(const std::string& remote_engine, Deadline deadline, PeerPtr* peer) {
  {
    // Callers mostly name a peer the way it was connected: no parsing then.
    std::lock_guard<std::mutex> lock(peers_mu_);
    auto it = peers_.find(remote_engine);
    if (it != peers_.end()) {
      *peer = it->second;
      return Result::Ok();
    }
  }
  EngineName name;
  LDD_RETURN_IF_ERROR(ParseEngineName(remote_engine, &name));
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      std::lock_guard<std::mutex> lock(peers_mu_);
      auto it = peers_.find(name.canonical);
      if (it != peers_.end()) {
        *peer = it->second;
        return Result::Ok();
      }
    }
    if (!auto_connect_ || attempt > 0) break;
    Result r = ConnectLocked(remote_engine, deadline);
    if (!r.ok() && r.code() != llm_datadist::LLM_ALREADY_LINK) return r;
  }
  return Result::NotYetLink(Msg("not connected to ", name.canonical, " (call Connect first)"));
}

Result HixlEngine::WithRelink(Peer& peer, Deadline deadline, const std::function<Result()>& step) {
  Result r = step();
  if (r.code() != llm_datadist::LLM_LINK_FAILED || peer.gone || deadline.Expired()) return r;
  llm_datadist::ClusterInfo cluster;
  cluster.remote_cluster_id = peer.cluster_id;
  llm_datadist::IpInfo ip;
  ip.ip = peer.name.host.c_str();
  ip.port = peer.name.port;
  cluster.remote_ip_infos.push_back(ip);
  std::vector<Status> rets;
  const int32_t left_ms = static_cast<int32_t>(std::clamp<int64_t>(deadline.RemainingMillis(), 1, INT32_MAX));
  Result linked = engine_->Link({cluster}, rets, left_ms);
  if (!linked.ok() && linked.code() != llm_datadist::LLM_ALREADY_LINK) return r;  // the first reason says more
  LDD_LOG(Info) << "hixl: the link to " << peer.name.canonical << " was replaced";
  return step();
}

Result HixlEngine::FetchPeerMemory(Peer& peer, Deadline deadline) {
  std::vector<uint8_t> reply;
  Result r = engine_->CallFrontEnd(peer.cluster_id, kFrontEndName, {kListMemRequest}, deadline, &reply);
  if (!r.ok()) return r.WithContext(Msg("asking ", peer.name.canonical, " for its registered memory"));
  std::vector<MemEntry> entries;
  if (!DecodeMemList(reply, &entries).ok())
    return Result::LinkFailed(Msg(peer.name.canonical, " described its memory malformedly"));
  peer.memory.Clear();
  for (const MemEntry& e : entries) LDD_RETURN_IF_ERROR(peer.memory.Add(e));
  return Result::Ok();
}

Result HixlEngine::ResolveRemote(Peer& peer, const std::vector<TransferOpDesc>& descs, Deadline deadline,
                                 std::vector<MemEntry>* out) {
  std::lock_guard<std::mutex> lock(peer.mu);
  out->assign(descs.size(), MemEntry{});
  bool fetched = false;
  for (size_t i = 0; i < descs.size(); ++i) {
    const MemEntry* e = peer.memory.Find(descs[i].remote_addr, descs[i].len);
    if (e == nullptr && !fetched) {
      // Unknown so far: the peer may have registered it since we asked.
      LDD_RETURN_IF_ERROR(WithRelink(peer, deadline, [&] { return FetchPeerMemory(peer, deadline); }));
      fetched = true;
      i = static_cast<size_t>(-1);  // entries may have changed: start over
      continue;
    }
    if (e == nullptr)
      return Result::ParamInvalid(Msg("op_descs[", i, "]: remote range [0x", std::hex, descs[i].remote_addr, ", +0x",
                                      descs[i].len, std::dec, ") is not inside memory ", peer.name.canonical,
                                      " registered"));
    (*out)[i] = *e;
  }
  return Result::Ok();
}

Result HixlEngine::ResolveLocal(const std::vector<TransferOpDesc>& descs, std::vector<MemEntry>* out) {
  std::lock_guard<std::mutex> lock(regs_mu_);
  out->assign(descs.size(), MemEntry{});
  for (size_t i = 0; i < descs.size(); ++i) {
    const MemEntry* e = local_.Find(descs[i].local_addr, descs[i].len);
    if (e == nullptr)
      return Result::ParamInvalid(Msg("op_descs[", i, "]: local range [0x", std::hex, descs[i].local_addr, ", +0x",
                                      descs[i].len, std::dec, ") is not inside memory registered here"));
    (*out)[i] = *e;
  }
  return Result::Ok();
}

Result HixlEngine::MakePlan(const std::string& remote_engine, ::hixl::TransferOp op,
                            const std::vector<TransferOpDesc>& descs, Deadline deadline, Plan* plan) {
  if (op != ::hixl::READ && op != ::hixl::WRITE)
    return Result::ParamInvalid(Msg("operation ", static_cast<int>(op), " is neither READ nor WRITE"));
  if (descs.empty()) return Result::ParamInvalid("op_descs is empty");
  for (size_t i = 0; i < descs.size(); ++i)
    if (descs[i].len == 0) return Result::ParamInvalid(Msg("op_descs[", i, "].len is 0"));
  LDD_RETURN_IF_ERROR(FindPeer(remote_engine, deadline, &plan->peer));
  // Reused by each call on this thread: a request of one op should cost
  // no allocation it does not keep.
  thread_local std::vector<MemEntry> local;
  thread_local std::vector<MemEntry> remote;
  LDD_RETURN_IF_ERROR(ResolveLocal(descs, &local));
  LDD_RETURN_IF_ERROR(ResolveRemote(*plan->peer, descs, deadline, &remote));
  plan->write = op == ::hixl::WRITE;
  if (descs.size() == 1) {
    // Kept in the job itself (ops_job.h): no op lists.
    plan->single = true;
    plan->one = {plan->peer->cluster_id, local[0].kind, remote[0].kind, local[0].region_id,
                 IoOp{reinterpret_cast<uint8_t*>(descs[0].local_addr), remote[0].region_id,
                      descs[0].remote_addr - remote[0].addr, descs[0].len}};
    return Result::Ok();
  }
  // One group per pair of memory kinds (rarely more than one), in storage
  // a finished request of this thread left (spare_transfers.h).
  std::vector<Engine::OpsTransfer>& groups = plan->groups;
  if (groups.empty()) groups = SpareGroups();
  for (size_t i = 0; i < descs.size(); ++i) {
    auto same_kinds = [&](const Engine::OpsTransfer& g) {
      return g.local_kind == local[i].kind && g.remote_kind == remote[i].kind;
    };
    auto found = std::find_if(groups.begin(), groups.end(), same_kinds);
    if (found == groups.end()) {
      Engine::OpsTransfer fresh = SpareTransfer();
      fresh.remote_cluster_id = plan->peer->cluster_id;
      fresh.push = plan->write;
      fresh.local_kind = local[i].kind;
      fresh.remote_kind = remote[i].kind;
      fresh.ops.reserve(descs.size());
      groups.push_back(std::move(fresh));
      found = groups.end() - 1;
    }
    Engine::OpsTransfer& t = *found;
    t.local_region_ids.push_back(local[i].region_id);
    t.remote_region_ids.push_back(remote[i].region_id);
    t.ops.push_back({reinterpret_cast<uint8_t*>(descs[i].local_addr), remote[i].region_id,
                     descs[i].remote_addr - remote[i].addr, descs[i].len});
  }
  for (Engine::OpsTransfer& t : groups) LeaseEachRegionOnce(&t);
  return Result::Ok();
}

Result HixlEngine::RunGroups(Peer& peer, const OpsJob::Groups& groups, Deadline deadline) {
  for (const Engine::OpsTransfer& t : groups) {
    Result done = engine_->TransferOps(t, deadline);
    if (done.code() == llm_datadist::LLM_KV_CACHE_NOT_EXIST) {
      // The peer deregistered that memory since we last asked.
      std::lock_guard<std::mutex> peer_lock(peer.mu);
      (void)FetchPeerMemory(peer, deadline);
      return Result::CacheNotExist(Msg("remote memory of ", peer.name.canonical, " is no longer registered: ",
                                       done.message()));
    }
    if (!done.ok()) return done.WithContext(Msg(t.push ? "write to " : "read from ", peer.name.canonical));
  }
  return Result::Ok();
}

std::shared_ptr<const TransferJob> HixlEngine::JobOf(Plan plan, std::chrono::steady_clock::time_point start) {
  Peer* peer = plan.peer.get();
  // The peer's runner, kept alive (with the peer) by every job holding it;
  // the plan's reference moves there (each count change is a locked
  // instruction on a line the workers touch too).
  std::shared_ptr<const OpsJob::Runner> runner(std::move(plan.peer), &peer->runner);
  if (plan.single) {
    const OpsJob::OneOp& one = plan.one;
    metrics::MeterSpec meter =
        engine_->MeterCall(peer->cluster_id, plan.write, one.local_kind, one.remote_kind, one.op.length);
    meter.start = start;
    // Whole cache lines, from this thread's pool (line_pool.h).
    return std::allocate_shared<OpsJob>(LineAllocator<OpsJob>{}, peer, plan.write, one, std::move(runner), meter);
  }
  metrics::MeterSpec meter = engine_->MeterCall(peer->cluster_id, plan.groups);
  meter.start = start;
  return std::make_shared<OpsJob>(peer, plan.write, std::move(plan.groups), std::move(runner), meter);
}

void HixlEngine::SetRunner(const PeerPtr& peer) {
  Peer* p = peer.get();
  p->runner = [this, p](const OpsJob::Groups& groups, Deadline d) {
    return WithRelink(*p, d, [&] { return RunGroups(*p, groups, d); });
  };
}

Result HixlEngine::TransferSync(const std::string& remote_engine, ::hixl::TransferOp op,
                                const std::vector<TransferOpDesc>& descs, int32_t timeout_ms) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  const Deadline deadline = Deadline::AfterMillis(timeout_ms);
  for (int attempt = 0;; ++attempt) {
    Plan plan;
    LDD_RETURN_IF_ERROR(MakePlan(remote_engine, op, descs, deadline, &plan));
    const uint64_t cluster = plan.peer->cluster_id;
    // A request of the engine's queue, run on this thread.
    Result r = engine_->transfers().RunNow(cluster, deadline, JobOf(std::move(plan)));
    // The peer replaced a registration since we last asked (its list is
    // fetched again by now): plan once more against the new one.
    if (r.code() != llm_datadist::LLM_KV_CACHE_NOT_EXIST) return r;
    if (attempt > 0) return Result::ParamInvalid(r.message());
  }
}

Result HixlEngine::TransferAsync(const std::string& remote_engine, ::hixl::TransferOp op,
                                 const std::vector<TransferOpDesc>& descs, const void* user_data, uint64_t* req) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  // One clock reading for the deadline, the meter and the queue.
  const auto now = std::chrono::steady_clock::now();
  const Deadline deadline = Deadline::At(now + std::chrono::milliseconds(async_timeout_ms_));
  Plan plan;
  LDD_RETURN_IF_ERROR(MakePlan(remote_engine, op, descs, deadline, &plan));
  // Runs on the engine's workers; Finalize stops them before the engine goes.
  const uint64_t cluster = plan.peer->cluster_id;
  return engine_->transfers().Submit(cluster, user_data, deadline, JobOf(std::move(plan), now), req, now);
}

namespace {
::hixl::TransferStatus ToHixl(RequestStatus s) {
  switch (s) {
    case RequestStatus::kWaiting: return ::hixl::TransferStatus::WAITING;
    case RequestStatus::kCompleted: return ::hixl::TransferStatus::COMPLETED;
    case RequestStatus::kTimeout: return ::hixl::TransferStatus::TIMEOUT;
    case RequestStatus::kFailed: break;
  }
  return ::hixl::TransferStatus::FAILED;
}
}  // namespace

Result HixlEngine::TransferStatusOf(uint64_t req, ::hixl::TransferStatus* status) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  RequestStatus s = RequestStatus::kWaiting;
  LDD_RETURN_IF_ERROR(engine_->transfers().Status(req, &s));
  *status = ToHixl(s);
  return Result::Ok();
}

Result HixlEngine::TransferStatuses(const ::hixl::GetTransferStatusArgs& args,
                                    std::vector<::hixl::TransferResult>* results) {
  std::shared_lock<std::shared_mutex> lock(life_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  std::vector<RequestResult> found;
  engine_->transfers().Query(args.max_query_count, args.skip_waiting, &found);
  results->clear();
  for (const RequestResult& f : found) {
    ::hixl::TransferResult r;
    r.req = reinterpret_cast<::hixl::TransferReq>(static_cast<uintptr_t>(f.id));
    r.user_data = f.user_data;
    r.status = ToHixl(f.status);
    results->push_back(r);
  }
  return Result::Ok();
}

}  // namespace lldd::hixl_impl
