// Discovery (llm.Directory): this instance's entry in the directory, links
// by cluster id, and links to peers whose entry vanished marked broken.
#include "common/logging.h"
#include "engine/engine.h"
#include "net/socket.h"

namespace lldd {
namespace {

// Initialize waits this long at most for the directory (grant + publish).
constexpr int64_t kDirectoryStartMs = 3000;

}  // namespace

DirectoryEntry Engine::SelfEntry() const {
  DirectoryEntry e;
  e.cluster_id = cluster_id_;
  e.role = static_cast<int32_t>(role_.load());
  e.instance_id = instance_id_;
  if (options_.listen) {
    e.host = AdvertisedHost(options_.listen_host, options_.local_device_ip);
    e.port = listen_port();
  }
  for (const auto& offer : transports_.Offers()) e.paths.push_back(offer.name);
  return e;
}

Result Engine::StartDirectory() {
  if (options_.directory.empty()) return Result::Ok();
  Directory::Config config;
  config.url = options_.directory;
  config.prefix = options_.directory_prefix;
  config.ttl_s = options_.directory_ttl_s;
  std::unique_ptr<Directory> directory;
  Result r = MakeDirectory(
      config, [this](uint64_t id, uint64_t instance) { OnPeerDeparted(id, instance); }, &directory);
  if (!r.ok()) return r.WithContext(Msg("option ", kOptionDirectory, "='", options_.directory, "'"));
  LDD_RETURN_IF_ERROR(directory->Start(SelfEntry(), Deadline::AfterMillis(kDirectoryStartMs)));
  directory_ = std::move(directory);
  return Result::Ok();
}

void Engine::StopDirectory() {
  if (!directory_) return;
  directory_->Stop();
  directory_.reset();
}

Result Engine::ResolveCluster(llm_datadist::ClusterInfo* cluster, Deadline deadline, uint64_t* instance_id) {
  DirectoryEntry entry;
  LDD_RETURN_IF_ERROR(directory_->Lookup(cluster->remote_cluster_id, deadline, &entry));
  if (entry.port == 0)
    return Result::LinkFailed(Msg("cluster ", cluster->remote_cluster_id, " is listed in ", directory_->url(),
                                  " as a client (it does not listen); link from it to this instance instead"));
  llm_datadist::IpInfo ip;
  ip.ip = llm_datadist::AscendString(entry.host.c_str());
  ip.port = entry.port;
  cluster->remote_ip_infos = {ip};
  *instance_id = entry.instance_id;
  return Result::Ok();
}

void Engine::OnPeerDeparted(uint64_t cluster_id, uint64_t instance_id) {
  LinkPtr link;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(cluster_id);
    if (it == links_.end() || it->second->closed()) return;
    link = it->second;
  }
  // A link made to (or accepted from) another instance of the same cluster
  // id, one that restarted meanwhile, is not this entry's to end.
  const uint64_t peer = link->listed_instance() != 0 ? link->listed_instance() : link->remote_instance();
  if (instance_id != 0 && peer != 0 && peer != instance_id) return;
  LDD_LOG(Warn) << "cluster " << cluster_id << " left the directory (finalized, or its lease expired); its link is broken";
  // (options_.directory, not directory_: this runs on the directory's
  // thread, which starts before Initialize stores directory_.)
  link->MarkBroken(Msg("cluster ", cluster_id, " left the directory ", options_.directory,
                       " (it finalized, or crashed and its lease expired)"));
}

}  // namespace lldd
