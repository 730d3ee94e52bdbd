#include "directory/etcd_directory.h"

#include <utility>

#include "common/logging.h"

namespace lldd {
namespace {

using Clock = std::chrono::steady_clock;

// No single etcd request of the background thread takes longer: Stop()
// never waits more than this for one in flight.
constexpr int64_t kRequestMs = 1000;
// How soon the thread tries again after etcd failed it.
constexpr int64_t kRetryMs = 300;
constexpr int64_t kRevokeMs = 1000;

}  // namespace

EtcdDirectory::EtcdDirectory(Config config, std::vector<std::string> endpoints, DepartedFn departed)
    : config_(std::move(config)), departed_(std::move(departed)), client_(std::move(endpoints)) {}

EtcdDirectory::~EtcdDirectory() { Stop(); }

std::string EtcdDirectory::KeyOf(uint64_t cluster_id) const { return config_.prefix + std::to_string(cluster_id); }

bool EtcdDirectory::ClusterOfKey(const std::string& key, uint64_t* cluster_id) const {
  if (key.size() <= config_.prefix.size() || key.compare(0, config_.prefix.size(), config_.prefix) != 0) return false;
  const std::string id = key.substr(config_.prefix.size());
  if (id.size() > 20 || id.find_first_not_of("0123456789") != std::string::npos) return false;
  try {
    *cluster_id = std::stoull(id);
  } catch (...) {
    return false;
  }
  return true;
}

Result EtcdDirectory::Start(const DirectoryEntry& self, Deadline deadline) {
  int64_t lease = 0;
  Result r = client_.Grant(config_.ttl_s, deadline, &lease);
  if (!r.ok()) return r.WithContext(Msg("directory ", url()));
  bool created = false;
  EtcdKeyValue existing;
  r = client_.PutIfAbsent(KeyOf(self.cluster_id), self.ToJson(), lease, deadline, &created, &existing);
  if (!r.ok() || !created) {
    client_.Revoke(lease, Deadline::AfterMillis(kRevokeMs));
    if (!r.ok()) return r.WithContext(Msg("directory ", url()));
    DirectoryEntry other;
    const bool known = DirectoryEntry::FromJson(existing.value, &other);
    return Result::ParamInvalid(Msg("cluster id ", self.cluster_id, " is already held in the directory ", url(),
                                    " by a live instance",
                                    known && other.port ? Msg(" at ", other.host, ":", other.port) : std::string(),
                                    "; cluster ids must be unique"));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    self_ = self;
    lease_ = lease;
  }
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
  LDD_LOG(Info) << "cluster " << self.cluster_id << " published in " << url() << " (lease " << config_.ttl_s << " s)";
  return Result::Ok();
}

void EtcdDirectory::Update(const DirectoryEntry& self, Deadline deadline) {
  int64_t lease = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    self_ = self;
    ++self_version_;
    lease = lease_;
    dirty_ = lease == 0;  // the thread publishes it when etcd is back
  }
  if (lease == 0) return;
  bool written = false;
  Result r = client_.PutIfLease(KeyOf(self.cluster_id), self.ToJson(), lease, deadline, &written);
  if (r.ok()) return;
  LDD_LOG(Warn) << "directory " << url() << ": entry not updated now (the keep-alive retries): " << r.message();
  std::lock_guard<std::mutex> lock(mu_);
  dirty_ = true;
}

Result EtcdDirectory::Lookup(uint64_t cluster_id, Deadline deadline, DirectoryEntry* out) {
  bool found = false;
  EtcdKeyValue kv;
  Result r = client_.Get(KeyOf(cluster_id), deadline, &found, &kv);
  if (!r.ok()) return Result::LinkFailed(Msg("directory ", url(), " cannot resolve cluster ", cluster_id, ": ", r.message()));
  if (!found)
    return Result::LinkFailed(Msg("cluster id ", cluster_id, " is not in the directory ", url(),
                                  " (no live instance published it under '", config_.prefix, "')"));
  if (!DirectoryEntry::FromJson(kv.value, out))
    return Result::LinkFailed(Msg("directory entry ", kv.key, " is not one of ours: ", kv.value));
  return Result::Ok();
}

void EtcdDirectory::Stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  client_.Cancel();  // a request in flight on the thread returns now
  watch_.Wake();
  thread_.join();
  client_.Resume();
  watch_.Close();
  std::vector<int64_t> leases;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int64_t* l : {&lease_, &granted_})
      if (*l != 0) leases.push_back(std::exchange(*l, 0));
  }
  for (int64_t lease : leases) {
    Result r = client_.Revoke(lease, Deadline::AfterMillis(kRevokeMs));
    if (!r.ok()) LDD_LOG(Warn) << "directory " << url() << ": lease not revoked (it expires by itself): " << r.message();
  }
}

void EtcdDirectory::Run() {
  const int64_t interval_ms = std::max<int64_t>(200, config_.ttl_s * 1000 / 3);
  auto next_keepalive = Clock::now() + std::chrono::milliseconds(interval_ms);
  auto next_watch = Clock::now();
  while (!stopping_) {
    const auto now = Clock::now();
    if (!watch_.open() && now >= next_watch) {
      Resync();
      next_watch = Clock::now() + std::chrono::milliseconds(kRetryMs);
    }
    if (now >= next_keepalive) {
      KeepAliveStep();
      bool published = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        published = lease_ != 0;
      }
      next_keepalive = Clock::now() + std::chrono::milliseconds(published ? interval_ms : kRetryMs);
    }
    if (stopping_) break;
    auto until = next_keepalive;
    if (!watch_.open()) until = std::min(until, next_watch);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    watch_.Poll(static_cast<int>(std::clamp<int64_t>(wait, 0, interval_ms)),
                [this](const EtcdWatch::Event& e) { OnEvent(e); });
  }
}

// Lists every entry, reports the known ones that vanished meanwhile (while
// the watch was down), and watches from just after that listing.
void EtcdDirectory::Resync() {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;
  Result r = client_.List(config_.prefix, Deadline::AfterMillis(kRequestMs), &kvs, &revision);
  if (!r.ok()) return;
  std::map<uint64_t, uint64_t> now;
  for (const auto& kv : kvs) {
    uint64_t id = 0;
    DirectoryEntry e;
    if (ClusterOfKey(kv.key, &id)) now[id] = DirectoryEntry::FromJson(kv.value, &e) ? e.instance_id : 0;
  }
  for (const auto& [id, instance] : known_) {
    auto it = now.find(id);
    if (it == now.end() || it->second != instance) departed_(id, instance);
  }
  known_ = std::move(now);
  if (!watch_.Open(client_.current_endpoint(), config_.prefix, revision + 1).ok()) known_.clear();
}

void EtcdDirectory::OnEvent(const EtcdWatch::Event& event) {
  uint64_t id = 0;
  if (!ClusterOfKey(event.kv.key, &id)) return;
  if (!event.deleted) {
    DirectoryEntry e;
    known_[id] = DirectoryEntry::FromJson(event.kv.value, &e) ? e.instance_id : 0;
    return;
  }
  auto it = known_.find(id);
  const uint64_t instance = it == known_.end() ? 0 : it->second;
  if (it != known_.end()) known_.erase(it);
  uint64_t self_id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    self_id = self_.cluster_id;
  }
  if (id != self_id) departed_(id, instance);
}

void EtcdDirectory::KeepAliveStep() {
  int64_t lease = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lease = lease_;
  }
  const Deadline deadline = Deadline::AfterMillis(kRequestMs);
  if (lease == 0) {
    Republish(deadline);
    return;
  }
  int64_t ttl_left = 0;
  Result r = client_.KeepAlive(lease, deadline, &ttl_left);
  if (!r.ok()) {
    if (!etcd_down_logged_ && !stopping_)
      LDD_LOG(Warn) << "directory " << url() << " unreachable (existing links are not affected): " << r.message();
    etcd_down_logged_ = true;
    return;
  }
  if (etcd_down_logged_) LDD_LOG(Info) << "directory " << url() << " reachable again";
  etcd_down_logged_ = false;
  if (ttl_left > 0) {
    RewriteIfDirty(lease, deadline);
    return;
  }
  LDD_LOG(Warn) << "directory " << url() << ": our lease expired; publishing this instance again";
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (lease_ == lease) lease_ = 0;
  }
  Republish(deadline);
}

// An entry Update() could not write is written now.
void EtcdDirectory::RewriteIfDirty(int64_t lease, Deadline deadline) {
  DirectoryEntry self;
  uint64_t version = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dirty_) return;
    self = self_;
    version = self_version_;
  }
  bool written = false;
  if (!client_.PutIfLease(KeyOf(self.cluster_id), self.ToJson(), lease, deadline, &written).ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (self_version_ == version) dirty_ = false;
}

// A new lease and the entry under it, unless another instance took the
// cluster id meanwhile (then we stay unpublished, and say so).
bool EtcdDirectory::Republish(Deadline deadline) {
  DirectoryEntry self;
  {
    std::lock_guard<std::mutex> lock(mu_);
    self = self_;
  }
  int64_t lease = 0;
  if (!client_.Grant(config_.ttl_s, deadline, &lease).ok()) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    granted_ = lease;
  }
  bool created = false;
  EtcdKeyValue existing;
  Result r = client_.PutIfAbsent(KeyOf(self.cluster_id), self.ToJson(), lease, deadline, &created, &existing);
  if (!r.ok() || !created) {
    // Cut short by Stop(): the lease stays in granted_ for Stop to revoke.
    if (stopping_) return false;
    client_.Revoke(lease, Deadline::AfterMillis(kRequestMs));
    {
      std::lock_guard<std::mutex> lock(mu_);
      granted_ = 0;
    }
    if (r.ok())
      LDD_LOG(Error) << "directory " << url() << ": cluster id " << self.cluster_id
                     << " is now held by another instance; this one stays unlisted";
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  lease_ = lease;
  granted_ = 0;
  LDD_LOG(Info) << "directory " << url() << ": cluster " << self.cluster_id << " published again";
  return true;
}

}  // namespace lldd

namespace lldd {

Result MakeDirectory(const Directory::Config& config, Directory::DepartedFn departed, std::unique_ptr<Directory>* out) {
  std::vector<std::string> endpoints;
  LDD_RETURN_IF_ERROR(ParseEtcdUrl(config.url, &endpoints));
  if (config.prefix.empty() || config.prefix.front() != '/' || config.prefix.back() != '/')
    return Result::ParamInvalid(Msg("key prefix '", config.prefix, "' must start and end with '/'"));
  if (config.ttl_s < 1 || config.ttl_s > 3600)
    return Result::ParamInvalid(Msg("lease TTL ", config.ttl_s, " s is not in 1..3600"));
  *out = std::make_unique<EtcdDirectory>(config, std::move(endpoints), std::move(departed));
  return Result::Ok();
}

}  // namespace lldd
