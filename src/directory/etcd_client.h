// A client of etcd's v3 API through its JSON gateway (HTTP/1.1 + JSON, the
// gateway every etcd >= 3.4 serves on its client port), over libcurl.
//
// Why the gateway and not gRPC: it needs only libcurl (already on most
// machines) and the nlohmann-json we use anyway, where gRPC would bring
// protoc-generated code, libgrpc++ and its build time (see the closing note
// of issue 20 for the figures).
//
// Every call is bounded by its deadline (connect and transfer), tries the
// endpoints in turn starting from the last one that answered, and keeps
// HTTP connections for reuse. Thread-safe.
#ifndef LLM_DATADIST_SRC_DIRECTORY_ETCD_CLIENT_H_
#define LLM_DATADIST_SRC_DIRECTORY_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"

namespace lldd {

// "etcd://host:port[,host:port...]" -> {"host:port", ...}. Hosts are names
// or IPv4 addresses ([v6] in brackets); ports 1..65535.
Result ParseEtcdUrl(const std::string& url, std::vector<std::string>* endpoints);

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t lease = 0;
};

class EtcdClient {
 public:
  explicit EtcdClient(std::vector<std::string> endpoints);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // A lease of `ttl_s` seconds.
  Result Grant(int64_t ttl_s, Deadline deadline, int64_t* lease);
  // Refreshes a lease; *ttl_left is 0 when etcd no longer knows it.
  Result KeepAlive(int64_t lease, Deadline deadline, int64_t* ttl_left);
  Result Revoke(int64_t lease, Deadline deadline);
  // Writes `key` only if it does not exist (one transaction); otherwise
  // *created is false and *existing holds what is there.
  Result PutIfAbsent(const std::string& key, const std::string& value, int64_t lease, Deadline deadline,
                     bool* created, EtcdKeyValue* existing);
  // Overwrites `key` only while it is still attached to `lease` (so an
  // update never takes over a key another instance now holds).
  Result PutIfLease(const std::string& key, const std::string& value, int64_t lease, Deadline deadline,
                    bool* written);
  Result Get(const std::string& key, Deadline deadline, bool* found, EtcdKeyValue* kv);
  // Every key under `prefix`, and the store's revision they were read at.
  Result List(const std::string& prefix, Deadline deadline, std::vector<EtcdKeyValue>* kvs, int64_t* revision);

  // The endpoint that answered last ("host:port"), for watches and messages.
  std::string current_endpoint() const;
  std::string endpoints_text() const;
  // Aborts calls in flight (within ~100 ms) and fails later ones at once.
  void Cancel() { cancelled_ = true; }
  void Resume() { cancelled_ = false; }
  bool cancelled() const { return cancelled_; }

 private:
  // POSTs `body` to `path` ("/v3/kv/range"); *reply is the response body.
  Result Post(const char* path, const std::string& body, Deadline deadline, std::string* reply);
  Result PostTo(const std::string& endpoint, const char* path, const std::string& body, Deadline deadline,
                std::string* reply);
  void* TakeHandle();
  void ReturnHandle(void* handle);

  const std::vector<std::string> endpoints_;
  std::atomic<size_t> current_{0};
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::vector<void*> idle_;  // CURL easy handles with their open connections
};

// The end of the key range that holds every key starting with `prefix`.
std::string PrefixRangeEnd(const std::string& prefix);

// A watch of every key under a prefix: one streaming request over the
// curl multi interface, so that the thread that runs it can also wait for
// its next timer and be woken at once by Wake().
class EtcdWatch {
 public:
  struct Event {
    bool deleted = false;
    EtcdKeyValue kv;
  };
  using Sink = std::function<void(const Event&)>;

  EtcdWatch();
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Opens the stream at `endpoint`, from `start_revision` (0: now).
  Result Open(const std::string& endpoint, const std::string& prefix, int64_t start_revision);
  void Close();
  bool open() const { return easy_ != nullptr; }
  // Waits up to `timeout_ms` for events (delivered to `sink`), a Wake(),
  // or the stream's end; false once the stream has ended (etcd gone).
  bool Poll(int timeout_ms, const Sink& sink);
  // Any thread: makes a Poll() in progress return now.
  void Wake();

 private:
  void Feed(const Sink& sink);

  void* multi_ = nullptr;
  void* easy_ = nullptr;
  void* headers_ = nullptr;
  std::string body_;
  std::string buffer_;  // received bytes, not yet a whole line
  bool created_ = false;
  bool ended_ = false;  // etcd cancelled the watch (compaction, shutdown)
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_DIRECTORY_ETCD_CLIENT_H_
