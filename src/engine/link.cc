#include "engine/link.h"

#include <algorithm>

namespace lldd {

void Link::Attach(std::shared_ptr<ControlChannel> control, std::shared_ptr<ConnectionPool> pool,
                  std::unique_ptr<Endpoint> endpoint) {
  control_ = std::move(control);
  pool_ = std::move(pool);
  endpoint_ = std::move(endpoint);
}

void Link::TrackSocket(const std::shared_ptr<Socket>& socket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    socket->Shutdown();
    return;
  }
  served_.erase(std::remove_if(served_.begin(), served_.end(), [](const auto& w) { return w.expired(); }),
                served_.end());
  served_.push_back(socket);
}

size_t Link::TrackedSockets() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(
      std::count_if(served_.begin(), served_.end(), [](const std::weak_ptr<Socket>& w) { return !w.expired(); }));
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
  }
  if (control_) control_->Shutdown();
  if (endpoint_) endpoint_->Close();
  for (auto& w : served)
    if (auto s = w.lock()) s->Shutdown();
}

Result Link::CheckUsable() const {
  if (!closed_) return Result::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  return Result::LinkFailed(Msg("link to cluster ", remote_cluster_id_, " is down: ", broken_reason_));
}

}  // namespace lldd
