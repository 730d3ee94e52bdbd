#include "engine/link.h"

#include <algorithm>

namespace lldd {

Result Link::CallPeer(const std::string& transport, const std::vector<uint8_t>& request, Deadline deadline,
                      std::vector<uint8_t>* reply) {
  Reply r;
  LDD_RETURN_IF_ERROR(control_->Call(MsgType::kTransportCall, EncodeTransportCall({transport, request}), deadline, &r));
  if (r.status != llm_datadist::LLM_SUCCESS) return Result(r.status, DecodeText(r.meta));
  *reply = std::move(r.meta);
  return Result::Ok();
}

Result Link::DialJoin(const std::string& transport, const std::vector<uint8_t>& join_info, Deadline deadline,
                      std::shared_ptr<Socket>* out) {
  if (!initiator_) return Result::ParamInvalid("only the connecting side of a link can dial its peer");
  if (closed_) return CheckUsable();
  return dialer_(*this, transport, join_info, deadline, out);
}

std::shared_ptr<Endpoint> Link::EndpointOf(const std::string& transport) const {
  for (const auto& p : paths_)
    if (transport == p.transport->name()) return p.endpoint;
  return nullptr;
}

Endpoint* Link::PathFor(uint32_t local_kind, uint32_t remote_kind, std::string* why) const {
  for (const auto& p : paths_)
    if ((p.caps.local_memory & local_kind) != 0 && (p.caps.remote_memory & remote_kind) != 0) return p.endpoint.get();
  std::string names;
  for (const auto& p : paths_) names += (names.empty() ? "" : ", ") + std::string(p.transport->name());
  *why = Msg("no data path of this link (", names, ") moves ", MemoryKindName(local_kind), " here to or from ",
             MemoryKindName(remote_kind), " at cluster ", remote_cluster_id_);
  return nullptr;
}

const char* Link::primary_path() const { return paths_.empty() ? "" : paths_.front().transport->name(); }

void Link::TrackSocket(const std::shared_ptr<Socket>& socket) { Track(&served_, socket); }

void Link::TrackDial(const std::shared_ptr<Socket>& socket) { Track(&dialing_, socket); }

void Link::Track(std::vector<std::weak_ptr<Socket>>* list, const std::shared_ptr<Socket>& socket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    socket->Shutdown();
    return;
  }
  list->erase(std::remove_if(list->begin(), list->end(), [](const auto& w) { return w.expired(); }), list->end());
  list->push_back(socket);
}

size_t Link::TrackedSockets() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(
      std::count_if(served_.begin(), served_.end(), [](const std::weak_ptr<Socket>& w) { return !w.expired(); }));
}

bool Link::TryBeginPeerCall() {
  if (++peer_calls_ <= kMaxPeerCallsPerLink) return true;
  --peer_calls_;
  return false;
}

Result Link::GetRemoteCache(int64_t cache_id, Deadline deadline, RemoteDesc* desc) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = remote_caches_.find(cache_id);
    if (it != remote_caches_.end()) {
      *desc = it->second;
      return Result::Ok();
    }
  }
  Reply reply;
  LDD_RETURN_IF_ERROR(control_->Call(MsgType::kCacheQuery, EncodeCacheId(cache_id), deadline, &reply));
  if (reply.status != llm_datadist::LLM_SUCCESS) return Result(reply.status, DecodeText(reply.meta));
  CacheInfo info;
  Result r = DecodeCacheInfo(reply.meta, &info);
  if (!r.ok() || info.cache_id != cache_id) return Result::LinkFailed("peer sent a malformed cache description");
  std::lock_guard<std::mutex> lock(mu_);
  remote_caches_[cache_id] = info.desc;
  *desc = std::move(info.desc);
  return Result::Ok();
}

void Link::ForgetRemoteCache(int64_t cache_id) {
  std::lock_guard<std::mutex> lock(mu_);
  remote_caches_.erase(cache_id);
}

void Link::MarkBroken(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_reason_.empty()) broken_reason_ = reason;
  }
  Close(reason);
}

void Link::Close(const std::string& reason) {
  std::vector<std::weak_ptr<Socket>> served;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_reason_.empty()) broken_reason_ = reason;
    closed_ = true;
    served.swap(served_);
    served.insert(served.end(), dialing_.begin(), dialing_.end());
    dialing_.clear();
  }
  if (control_) control_->Shutdown();
  for (auto& p : paths_) p.endpoint->Close();
  for (auto& w : served)
    if (auto s = w.lock()) s->Shutdown();
}

Result Link::CheckUsable() const {
  if (!closed_) return Result::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  return Result::LinkFailed(Msg("link to cluster ", remote_cluster_id_, " is down: ", broken_reason_));
}

}  // namespace lldd
