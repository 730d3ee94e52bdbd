// Discovery: instances publish themselves (cluster id, role, listener,
// data paths) in a shared directory, find each other there by cluster id,
// and learn when one departs. The engine sees only this interface; the one
// implementation is etcd (etcd_directory.h), built when libcurl is found.
#ifndef LLM_DATADIST_SRC_DIRECTORY_DIRECTORY_H_
#define LLM_DATADIST_SRC_DIRECTORY_DIRECTORY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"

namespace lldd {

// What an instance publishes about itself (JSON in the directory).
struct DirectoryEntry {
  uint64_t cluster_id = 0;
  int32_t role = 0;
  uint64_t instance_id = 0;  // random per instance: a restart is another one
  std::string host;          // where its listener is reached; "" for a client
  uint16_t port = 0;
  std::vector<std::string> paths;  // data paths it offers ("shm", "tcp", ...)

  std::string ToJson() const;
  static bool FromJson(const std::string& text, DirectoryEntry* out);
};

// The address peers should dial for a listener bound to `listen_host`:
// itself, unless it is a wildcard; then `preferred` if set, else the first
// non-loopback IPv4 address of this host.
std::string AdvertisedHost(const std::string& listen_host, const std::string& preferred);

class Directory {
 public:
  struct Config {
    std::string url;  // "etcd://host:port[,host:port...]"
    std::string prefix = "/llm_datadist/";
    int64_t ttl_s = 5;
  };
  // A peer's entry vanished; `instance_id` is the instance that held it
  // (0 if unknown). Called on the directory's own thread; must not block.
  using DepartedFn = std::function<void(uint64_t cluster_id, uint64_t instance_id)>;

  virtual ~Directory() = default;
  // Publishes `self` (failing if another live instance holds its cluster
  // id) and starts watching.
  virtual Result Start(const DirectoryEntry& self, Deadline deadline) = 0;
  // Replaces this instance's entry (SetRole); while the directory is away
  // the new entry is published when it returns.
  virtual void Update(const DirectoryEntry& self, Deadline deadline) = 0;
  // The live entry of a cluster id; LLM_LINK_FAILED if there is none.
  virtual Result Lookup(uint64_t cluster_id, Deadline deadline, DirectoryEntry* out) = 0;
  // Removes this instance's entry and stops; prompt even if the directory
  // is unreachable.
  virtual void Stop() = 0;
  virtual std::string url() const = 0;
};

// Checks `config` (LLM_PARAM_INVALID naming what is wrong) and makes the
// directory, not started; LLM_FEATURE_NOT_ENABLED in a build without etcd.
Result MakeDirectory(const Directory::Config& config, Directory::DepartedFn departed, std::unique_ptr<Directory>* out);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_DIRECTORY_DIRECTORY_H_
