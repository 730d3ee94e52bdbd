// The link table: linking to a server, accepting a link, unlinking, and
// telling a stale link (its peer restarted) from a live duplicate.
#include <algorithm>
#include <chrono>
#include <future>
#include <optional>

#include "common/logging.h"
#include "common/random.h"
#include "control/link_auth.h"
#include "engine/engine.h"
#include "engine/handshake.h"

namespace lldd {
namespace {

using llm_datadist::ClusterInfo;
using llm_datadist::LLM_SUCCESS;

// A peer that vanishes without closing (power loss, cut cable) is noticed
// within about 10 s by keepalive on the control connection.
constexpr int kKeepAliveIdleS = 5;
constexpr int kKeepAliveIntervalS = 1;
constexpr int kKeepAliveCount = 5;

// Runs `one` for every cluster in parallel (so that the whole call honours
// its timeout); a status per cluster in `rets`, the first failure returned.
Result ForEachCluster(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets,
                      const std::function<Result(const ClusterInfo&)>& one) {
  std::vector<std::future<Result>> pending;
  for (const auto& c : clusters) pending.push_back(std::async(std::launch::async, [&one, &c] { return one(c); }));
  Result first_failure;
  for (size_t i = 0; i < clusters.size(); ++i) {
    Result r = pending[i].get();
    rets[i] = r.code();
    if (!r.ok() && first_failure.ok()) first_failure = r.WithContext(Msg("cluster ", clusters[i].remote_cluster_id));
  }
  return first_failure;
}

}  // namespace

Engine::LinkPtr Engine::MakeLink(uint64_t remote_cluster_id, bool initiator, uint64_t link_id, uint64_t link_secret,
                                 const std::shared_ptr<Socket>& control_socket) {
  auto link = std::make_shared<lldd::Link>(
      remote_cluster_id, initiator, link_id, link_secret,
      [this](lldd::Link& l, const std::string& transport, const std::vector<uint8_t>& join_info, Deadline deadline,
             std::shared_ptr<Socket>* out) { return DialJoin(l, transport, join_info, deadline, out); },
      [this](std::function<void()> fn) { threads_.Spawn(std::move(fn)); });
  std::weak_ptr<lldd::Link> weak = link;
  link->set_control(std::make_shared<ControlChannel>(
      control_socket, [this, weak](MsgType type, std::vector<uint8_t> meta, ControlChannel::Responder respond) {
        HandleControl(weak, type, std::move(meta), std::move(respond));
      }));
  link->TrackSocket(control_socket);
  return link;
}

Result Engine::ConnectPaths(const LinkPtr& link, const std::vector<TransportSet::Choice>& chosen, Deadline deadline) {
  std::vector<LinkPath> paths(chosen.size());
  std::shared_ptr<Endpoint> fallback;
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < chosen.size(); ++i) {
      const TransportCaps caps = chosen[i].transport->caps();
      if (caps.any_host != (pass == 0)) continue;
      paths[i].transport = chosen[i].transport;
      paths[i].caps = caps;
      Result r = chosen[i].transport->Connect(link, chosen[i].peer_info, fallback, deadline, &paths[i].endpoint);
      if (!r.ok()) {
        for (auto& p : paths)
          if (p.endpoint) p.endpoint->Close();
        return r.WithContext(Msg("data path '", chosen[i].transport->name(), "'"));
      }
      if (!fallback) fallback = paths[i].endpoint;
    }
  }
  for (auto& p : paths) link->AddPath(std::move(p));
  return Result::Ok();
}

Result Engine::DialJoin(lldd::Link& link, const std::string& transport, const std::vector<uint8_t>& join_info,
                        Deadline deadline, std::shared_ptr<Socket>* out) {
  const auto& a = link.address();
  Socket s;
  LDD_RETURN_IF_ERROR(Connect(a.host, a.port, a.local_host, deadline, &s));
  Hello hello;
  hello.kind = ConnKind::kJoin;
  hello.cluster_id = cluster_id_;
  hello.role = static_cast<int32_t>(role_.load());
  hello.link_id = link.link_id();
  hello.link_secret = link.link_secret();
  hello.transport = transport;
  hello.join_info = join_info;
  auto socket = std::make_shared<Socket>(std::move(s));
  link.TrackDial(socket);
  HelloAck ack;
  Result r = ClientHandshake(socket->fd(), hello, "", deadline, &ack);
  if (!r.ok() && link.closed()) return Result::LinkFailed(Msg("link to cluster ", link.remote_cluster_id(), " closed"));
  LDD_RETURN_IF_ERROR(r);
  *out = std::move(socket);
  return Result::Ok();
}

Result Engine::Link(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets, int32_t timeout_ms) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  rets.assign(clusters.size(), llm_datadist::LLM_FAILED);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (clusters.empty()) return Result::ParamInvalid("no clusters given");
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  if (clusters.size() > options_.max_links)
    return Result(llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT, Msg(clusters.size(), " clusters exceed the limit of ",
                                                                  options_.max_links, " (", kOptionMaxLinks, ")"));
  const Deadline deadline = Deadline::AfterMillis(timeout_ms);
  return ForEachCluster(clusters, rets, [&](const ClusterInfo& c) { return LinkOne(c, deadline); });
}

Result Engine::LinkOne(const ClusterInfo& given, Deadline deadline) {
  // Only a cluster id: the directory knows where it listens.
  ClusterInfo cluster = given;
  uint64_t directory_instance = 0;
  if (cluster.remote_ip_infos.empty() && directory_)
    LDD_RETURN_IF_ERROR(ResolveCluster(&cluster, deadline, &directory_instance));
  if (cluster.remote_ip_infos.size() != 1)
    return Result::ParamInvalid(Msg("remote_ip_infos must hold exactly one entry, not ", cluster.remote_ip_infos.size()));
  if (cluster.local_ip_infos.size() > 1) return Result::ParamInvalid("local_ip_infos may hold at most one entry");
  const std::string host = cluster.remote_ip_infos[0].ip.GetString();
  const uint16_t port = cluster.remote_ip_infos[0].port;
  if (!IsNumericAddress(host)) return Result::ParamInvalid(Msg("remote ip '", host, "' is not a numeric IP address"));
  if (port == 0) return Result::ParamInvalid("remote port must not be 0");
  std::string local_host;
  if (!cluster.local_ip_infos.empty()) {
    local_host = cluster.local_ip_infos[0].ip.GetString();
    if (!local_host.empty() && !IsNumericAddress(local_host))
      return Result::ParamInvalid(Msg("local ip '", local_host, "' is not a numeric IP address"));
  }
  // Without a local address in the call, the device address of
  // llm.LocalCommRes (this rank's NIC) is where our connections leave from.
  if (local_host.empty()) local_host = options_.local_device_ip;
  if (cluster.remote_cluster_id == cluster_id_)
    return Result::ParamInvalid(Msg("cluster id ", cluster_id_, " is this instance's own"));
  const uint64_t remote = cluster.remote_cluster_id;
  LinkPtr existing;
  bool accepting = false;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(remote);
    if (it != links_.end() && !it->second->closed()) existing = it->second;
    if (it == links_.end() && !HasRoomLocked())
      return Result(llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT,
                    Msg("already ", links_.size(), " links, the maximum (", kOptionMaxLinks, ")"));
    // The check and the mark are one step, so that a link arriving from
    // the same peer is either seen here or sees our dial (AcceptControl);
    // one being accepted right now is waited for rather than raced.
    if (!existing && accepting_.count(remote) != 0) accepting = true;
    if (!existing && !accepting) ++dialing_[remote];
  }
  if (accepting) return AdoptPeerLink(remote, deadline, true);
  // The peer linked to us: one link serves both ways, so linking back
  // succeeds and holds it (the vendor's samples link both ways at once).
  if (existing && !existing->held()) return AdoptPeerLink(remote, deadline);
  // A link that still looks alive may belong to a peer that just died or
  // restarted (its connection's end not seen yet): ask it before refusing.
  if (existing) {
    if (PeerAnswers(existing, deadline.Earlier(Deadline::AfterMillis(500))))
      return Result::AlreadyLink(Msg("cluster ", remote, " is already linked"));
    existing->MarkBroken("the peer stopped answering");
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    ++dialing_[remote];
  }
  struct DialGuard {
    Engine* engine;
    uint64_t remote;
    ~DialGuard() { engine->EndDial(remote); }
  } dial_guard{this, remote};

  Socket s;
  Result r = Connect(host, port, local_host, deadline, &s);
  if (!r.ok()) return Result::LinkFailed(r.message());
  Hello hello;
  hello.kind = ConnKind::kControl;
  hello.cluster_id = cluster_id_;
  hello.instance_id = instance_id_;
  hello.role = static_cast<int32_t>(role_.load());
  hello.transport = options_.backend;
  hello.offers = transports_.Offers();
  if (!options_.link_token.empty()) hello.auth_nonce = MakeAuthNonce();
  HelloAck ack;
  r = ClientHandshake(s.fd(), hello, options_.link_token, deadline, &ack);
  // A refusal still names the server, and talking to the wrong server is
  // the more useful thing to report.
  if (ack.cluster_id != 0 && ack.cluster_id != cluster.remote_cluster_id)
    return Result::LinkFailed(Msg("the server at ", host, ":", port, " is cluster ", ack.cluster_id, ", not ",
                                  cluster.remote_cluster_id));
  // The peer is linking to us at the same moment (or holds its link to us
  // already), and its link is the one both keep.
  if (r.code() == llm_datadist::LLM_ALREADY_LINK) return AdoptPeerLink(remote, deadline);
  if (!r.ok()) return r.code() == llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT ? r : Result::LinkFailed(r.message());
  EnableKeepAlive(s.fd(), kKeepAliveIdleS, kKeepAliveIntervalS, kKeepAliveCount);
  std::vector<TransportSet::Choice> chosen;
  for (const TransportOffer& path : ack.transports) {
    Transport* t = transports_.Find(path.name);
    if (t == nullptr) return Result::LinkFailed(Msg("the peer chose an unknown data path '", path.name, "'"));
    chosen.push_back({t, path.info});
  }
  if (chosen.empty()) return Result::LinkFailed("the peer chose no data path");
  LinkPtr link = MakeLink(cluster.remote_cluster_id, true, ack.link_id, ack.link_secret,
                          std::make_shared<Socket>(std::move(s)));
  link->set_address({host, port, local_host});
  link->set_listed_instance(directory_instance);
  r = ConnectPaths(link, chosen, deadline);
  if (!r.ok()) {
    link->Close("a data path failed");
    return r.code() == llm_datadist::LLM_TIMEOUT ? r : Result::LinkFailed(r.message());
  }
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(cluster.remote_cluster_id);
    if (stopping_ || (it != links_.end() && !it->second->closed())) {
      link->Close("superseded");
      return stopping_ ? Result::LinkFailed("instance is finalizing")
                       : Result::AlreadyLink(Msg("cluster ", cluster.remote_cluster_id, " is already linked"));
    }
    if (it != links_.end()) it->second->Close("replaced by a new link");
    link->set_held(true);
    links_[cluster.remote_cluster_id] = link;
    links_version_.fetch_add(1, std::memory_order_release);
  }
  metrics_.Peer(cluster.remote_cluster_id, true);
  metrics_.links_initiated.fetch_add(1, std::memory_order_relaxed);
  threads_.Spawn([this, link] { RunControl(link); });
  LDD_LOG(Info) << "cluster " << cluster_id_ << " linked to cluster " << cluster.remote_cluster_id << " at " << host
                << ":" << port << " over " << link->primary_path();
  return Result::Ok();
}

Result Engine::AdoptPeerLink(uint64_t remote_cluster_id, Deadline deadline, bool being_accepted) {
  std::unique_lock<std::shared_mutex> lock(links_mu_);
  LinkPtr link;
  auto arrived = [&] {
    auto it = links_.find(remote_cluster_id);
    const bool there = it != links_.end() && !it->second->closed();
    if (there && it->second->answered()) link = it->second;
    // An accept we waited for that ended without a link: nothing to wait for.
    const bool gave_up = being_accepted && !there && accepting_.count(remote_cluster_id) == 0;
    return link != nullptr || stopping_ || gave_up;
  };
  while (!arrived()) {
    if (deadline.Expired()) break;
    links_cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, deadline.RemainingMillis())));
  }
  if (!link)
    return Result::LinkFailed(Msg("cluster ", remote_cluster_id, " answered that it links to us, but its link did "
                                  "not arrive in time"));
  link->set_held(true);
  LDD_LOG(Info) << "cluster " << cluster_id_ << " and cluster " << remote_cluster_id
                << " linked to each other; both use the link cluster " << std::min(cluster_id_, remote_cluster_id)
                << " made";
  return Result::Ok();
}

void Engine::EndAccept(uint64_t remote_cluster_id) {
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = accepting_.find(remote_cluster_id);
    if (it != accepting_.end() && --it->second == 0) accepting_.erase(it);
  }
  links_cv_.notify_all();
}

void Engine::EndDial(uint64_t remote_cluster_id) {
  std::lock_guard<std::shared_mutex> lock(links_mu_);
  auto it = dialing_.find(remote_cluster_id);
  if (it != dialing_.end() && --it->second == 0) dialing_.erase(it);
}

Status Engine::AcceptControl(const std::shared_ptr<Socket>& socket, const Hello& hello, const std::string& peer,
                             LinkPtr* out, std::string* why, std::vector<TransportOffer>* paths) {
  if (hello.cluster_id == cluster_id_) {
    *why = Msg("cluster id ", cluster_id_, " is this instance's own");
    return llm_datadist::LLM_LINK_FAILED;
  }
  // While this runs, a LinkOne of ours to the same cluster waits for it
  // instead of dialing (LinkOne, AdoptPeerLink).
  struct AcceptGuard {
    Engine* engine;
    uint64_t remote;
    AcceptGuard(Engine* e, uint64_t r) : engine(e), remote(r) {}
    ~AcceptGuard() { engine->EndAccept(remote); }
  };
  std::optional<AcceptGuard> accept_guard;
  {
    // Both sides link to each other and ours is kept (see below): refused
    // before any data path is made, since closing a UCX endpoint by force
    // can take down lanes the kept link shares with it.
    LinkPtr held;
    {
      std::lock_guard<std::shared_mutex> lock(links_mu_);
      if (dialing_.count(hello.cluster_id) != 0 && hello.cluster_id > cluster_id_) {
        *why = Msg("cluster ", cluster_id_, " is linking to cluster ", hello.cluster_id,
                   " at the same moment; the lower cluster id's link is kept");
        return llm_datadist::LLM_ALREADY_LINK;
      }
      auto it = links_.find(hello.cluster_id);
      if (it != links_.end() && !it->second->closed() && it->second->held()) held = it->second;
      ++accepting_[hello.cluster_id];
    }
    accept_guard.emplace(this, hello.cluster_id);
    if (held && !LinkIsStale(held, hello)) {
      *why = Msg("cluster ", cluster_id_, " has linked to cluster ", hello.cluster_id, " already");
      return llm_datadist::LLM_ALREADY_LINK;
    }
  }
  std::vector<TransportSet::Choice> chosen;
  Result r = transports_.Choose(options_.backend, hello.transport, hello.offers, &chosen);
  if (!r.ok()) {
    *why = r.message();
    return r.code();
  }
  LinkPtr link = MakeLink(hello.cluster_id, false, RandomU64(), RandomU64(), socket);
  link->set_remote_instance(hello.instance_id);
  // A refused link gives up its data paths but not the control socket,
  // which still carries the refusal.
  auto refuse = [&](Status status, std::string reason) {
    for (const auto& path : link->paths()) path.endpoint->Close();
    *why = std::move(reason);
    return status;
  };
  r = ConnectPaths(link, chosen, Deadline::AfterMillis(kHandshakeTimeoutMs));
  if (!r.ok()) return refuse(llm_datadist::LLM_LINK_FAILED, r.message());
  for (const auto& c : chosen) {
    TransportOffer o;
    o.name = c.transport->name();
    r = c.transport->LocalInfo(&o.info);
    if (!r.ok()) return refuse(llm_datadist::LLM_LINK_FAILED, Msg("data path '", o.name, "': ", r.message()));
    paths->push_back(std::move(o));
  }
  LinkPtr existing;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(hello.cluster_id);
    if (it != links_.end() && !it->second->closed()) existing = it->second;
  }
  if (existing && LinkIsStale(existing, hello)) existing->Close("replaced by a new link from the same cluster");
  LinkPtr replaced;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(hello.cluster_id);
    if (stopping_) return refuse(llm_datadist::LLM_LINK_FAILED, "instance is finalizing");
    // Both sides link to each other (the vendor's samples do): one link is
    // kept, ours if we hold a live one, else the lower cluster id's; the
    // refused side adopts it (AdoptPeerLink) on LLM_ALREADY_LINK.
    const bool live = it != links_.end() && !it->second->closed();
    if (live && it->second->held())
      return refuse(llm_datadist::LLM_ALREADY_LINK,
                    Msg("cluster ", cluster_id_, " has linked to cluster ", hello.cluster_id, " already"));
    if (live)
      return refuse(llm_datadist::LLM_LINK_FAILED,
                    Msg("cluster ", hello.cluster_id, " is already linked (duplicate cluster id?)"));
    if (dialing_.count(hello.cluster_id) != 0 && hello.cluster_id > cluster_id_)
      return refuse(llm_datadist::LLM_ALREADY_LINK,
                    Msg("cluster ", cluster_id_, " is linking to cluster ", hello.cluster_id,
                        " at the same moment; the lower cluster id's link is kept"));
    if (it == links_.end() && !HasRoomLocked())
      return refuse(llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT,
                    Msg("this instance already has ", links_.size(), " links, the maximum (", kOptionMaxLinks, ")"));
    if (it != links_.end()) replaced = it->second;
    link->set_answered(false);
    links_[hello.cluster_id] = link;
    links_version_.fetch_add(1, std::memory_order_release);
  }
  if (replaced) LDD_LOG(Info) << "cluster " << hello.cluster_id << " re-linked from " << peer << "; old link dropped";
  EnableKeepAlive(socket->fd(), kKeepAliveIdleS, kKeepAliveIntervalS, kKeepAliveCount);
  *out = link;
  return LLM_SUCCESS;
}

bool Engine::LinkIsStale(const LinkPtr& existing, const Hello& hello) {
  if (existing->remote_instance() == hello.instance_id) return true;  // the peer itself re-links
  // Another instance claims the cluster id: the old one is stale only if it
  // no longer answers (it restarted, or its network went away).
  return !PeerAnswers(existing, Deadline::AfterMillis(1000));
}

bool Engine::PeerAnswers(const LinkPtr& link, Deadline deadline) {
  Reply reply;
  return link->control().Call(MsgType::kCacheQuery, EncodeCacheId(0), deadline, &reply).ok();
}

void Engine::RunControl(const LinkPtr& link) {
  std::string why = link->control().Run();
  bool current = false;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(link->remote_cluster_id());
    current = it != links_.end() && it->second == link;
  }
  if (current && !link->closed()) {
    LDD_LOG(Warn) << "link to cluster " << link->remote_cluster_id() << " broke: " << why;
    link->MarkBroken(Msg("control connection lost (", why.empty() ? "closed by peer" : why, ")"));
  } else {
    link->Close("unlinked");
  }
}

bool Engine::HasRoomLocked() {
  if (links_.size() < options_.max_links) return true;
  // Broken links stay in the table so that calls naming them say why they
  // fail; at the limit they make room (a server whose clients vanish
  // would otherwise fill up with them).
  for (auto it = links_.begin(); it != links_.end();) {
    if (!it->second->closed()) {
      ++it;
      continue;
    }
    metrics_.ForgetPeer(it->first);
    metrics_.links_closed.fetch_add(1, std::memory_order_relaxed);
    it = links_.erase(it);
    links_version_.fetch_add(1, std::memory_order_release);
  }
  return links_.size() < options_.max_links;
}

void Engine::RemoveLink(const LinkPtr& link) {
  std::lock_guard<std::shared_mutex> lock(links_mu_);
  auto it = links_.find(link->remote_cluster_id());
  if (it != links_.end() && it->second == link) {
    links_.erase(it);
    links_version_.fetch_add(1, std::memory_order_release);
    metrics_.ForgetPeer(link->remote_cluster_id());
    metrics_.links_closed.fetch_add(1, std::memory_order_relaxed);
  }
}

Result Engine::FindLink(uint64_t cluster_id, LinkPtr* link) {
  {
    std::shared_lock<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(cluster_id);
    if (it == links_.end()) return Result::NotYetLink(Msg("cluster ", cluster_id, " is not linked"));
    *link = it->second;
  }
  return (*link)->CheckUsable();
}

Result Engine::Unlink(const std::vector<ClusterInfo>& clusters, std::vector<Status>& rets, int32_t timeout_ms,
                      bool force) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  rets.assign(clusters.size(), llm_datadist::LLM_FAILED);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  if (clusters.empty()) return Result::ParamInvalid("no clusters given");
  if (timeout_ms <= 0) return Result::ParamInvalid(Msg("timeout_in_millis ", timeout_ms, " must be > 0"));
  const Deadline deadline = Deadline::AfterMillis(timeout_ms);
  return ForEachCluster(clusters, rets, [&](const ClusterInfo& c) { return UnlinkOne(c, deadline, force); });
}

Result Engine::UnlinkOne(const ClusterInfo& cluster, Deadline deadline, bool force) {
  LinkPtr link;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(cluster.remote_cluster_id);
    if (it == links_.end()) return Result::NotYetLink(Msg("cluster ", cluster.remote_cluster_id, " is not linked"));
    link = it->second;
  }
  if (!force && !link->closed()) {
    // Our hold goes first, so that two unlinks crossing each other both
    // tear the link down (each finds the other side no longer holding).
    const bool held = link->ReleaseHold();
    Reply reply;
    Result r = link->control().Call(MsgType::kUnlink, {static_cast<uint8_t>(held ? 1 : 0)}, deadline, &reply);
    if (!r.ok()) {
      bool gone = link->closed();
      {
        std::lock_guard<std::shared_mutex> lock(links_mu_);
        auto it = links_.find(cluster.remote_cluster_id);
        gone = gone || it == links_.end() || it->second != link;
      }
      if (gone) return Result::Ok();  // the peer's own unlink tore it down meanwhile
      link->set_held(held);
      return Result::UnlinkFailed(Msg("the peer did not confirm the unlink (", r.message(),
                                      "); unlink with force_flag=true to drop the local end"));
    }
    // The peer linked to us too and still holds the link: it stays, for
    // the peer, until the peer unlinks it as well.
    if (reply.meta.size() == 1 && reply.meta[0] == 1) return Result::Ok();
  }
  RemoveLink(link);
  link->Close("unlinked");
  return Result::Ok();
}

}  // namespace lldd
