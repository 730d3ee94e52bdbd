// The directory in etcd: this instance's entry, kept alive under a lease,
// the entries of others looked up by cluster id, and a watch that reports
// peers whose entry vanished (they finalized, or crashed and their lease
// expired).
//
// One background thread per instance does the keep-alive and the watch;
// when etcd is unreachable it retries without blocking anyone, and when
// etcd returns (or the lease expired meanwhile) it publishes the entry
// again. Every etcd request is bounded (see EtcdClient), so a directory
// outage never holds up links, transfers or Stop() for long.
#ifndef LLM_DATADIST_SRC_DIRECTORY_ETCD_DIRECTORY_H_
#define LLM_DATADIST_SRC_DIRECTORY_ETCD_DIRECTORY_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "directory/directory.h"
#include "directory/etcd_client.h"

namespace lldd {

class EtcdDirectory : public Directory {
 public:
  EtcdDirectory(Config config, std::vector<std::string> endpoints, DepartedFn departed);
  ~EtcdDirectory() override;

  // Publishes `self` (failing if another live instance holds its cluster
  // id) and starts the thread.
  Result Start(const DirectoryEntry& self, Deadline deadline) override;
  // Replaces this instance's entry (SetRole); while etcd is away the new
  // entry is published when it returns.
  void Update(const DirectoryEntry& self, Deadline deadline) override;
  // The live entry of a cluster id; LLM_LINK_FAILED if there is none.
  Result Lookup(uint64_t cluster_id, Deadline deadline, DirectoryEntry* out) override;
  // Stops the thread and revokes the lease (the entry goes at once).
  void Stop() override;

  std::string url() const override { return client_.endpoints_text(); }
  std::string KeyOf(uint64_t cluster_id) const;

 private:
  void Run();
  void KeepAliveStep();
  bool Republish(Deadline deadline);
  void RewriteIfDirty(int64_t lease, Deadline deadline);
  void Resync();
  void OnEvent(const EtcdWatch::Event& event);
  bool ClusterOfKey(const std::string& key, uint64_t* cluster_id) const;

  const Config config_;
  const DepartedFn departed_;
  EtcdClient client_;
  EtcdWatch watch_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;  // self_, lease_
  DirectoryEntry self_;
  int64_t lease_ = 0;  // 0: not published (etcd away, or lease lost)
  // A lease Republish() was granted but has not made lease_ (yet): if Stop()
  // cuts it short, the entry may be in etcd under it all the same.
  int64_t granted_ = 0;
  bool dirty_ = false;  // self_ changed but etcd may not have it yet
  uint64_t self_version_ = 0;  // counts Update()s, so a rewrite of an older self_ leaves dirty_ set

  // Thread only: the instance each known cluster id's entry belongs to.
  std::map<uint64_t, uint64_t> known_;
  bool etcd_down_logged_ = false;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_DIRECTORY_ETCD_DIRECTORY_H_
