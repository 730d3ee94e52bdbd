#include "directory/etcd_client.h"

#include <curl/curl.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "directory/base64.h"
#include "net/socket.h"

namespace lldd {
namespace {

using nlohmann::json;

// curl_global_init is not thread-safe in every libcurl: once per process.
void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t AppendBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// Called by curl about every 100 ms at least: a cancelled client aborts.
int AbortIfCancelled(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

// etcd's JSON encodes 64-bit integers as strings; absent means 0.
int64_t Int64Field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (!it->is_string()) return 0;
  try {
    return std::stoll(it->get<std::string>());
  } catch (...) {
    return 0;
  }
}

bool ParseKv(const json& j, EtcdKeyValue* kv) {
  if (!j.is_object()) return false;
  std::string key = j.value("key", std::string());
  std::string value = j.value("value", std::string());
  if (!Base64Decode(key, &kv->key) || !Base64Decode(value, &kv->value)) return false;
  kv->lease = Int64Field(j, "lease");
  return true;
}

bool ValidHost(const std::string& host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') return IsNumericAddress(host.substr(1, host.size() - 2));
  if (host.empty() || host.size() > 253) return false;
  return host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == std::string::npos;
}

}  // namespace

Result ParseEtcdUrl(const std::string& url, std::vector<std::string>* endpoints) {
  constexpr const char kScheme[] = "etcd://";
  if (url.rfind(kScheme, 0) != 0) return Result::ParamInvalid("must start with etcd:// (etcd://host:port[,host:port...])");
  std::vector<std::string> out;
  std::string rest = url.substr(sizeof(kScheme) - 1);
  size_t start = 0;
  for (;;) {
    const size_t comma = rest.find(',', start);
    const std::string item = rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t colon = item.rfind(':');
    if (colon == std::string::npos) return Result::ParamInvalid(Msg("endpoint '", item, "' has no :port"));
    const std::string host = item.substr(0, colon);
    const std::string port = item.substr(colon + 1);
    if (!ValidHost(host)) return Result::ParamInvalid(Msg("endpoint '", item, "' has no valid host"));
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(port) == 0 || std::stoi(port) > 65535)
      return Result::ParamInvalid(Msg("endpoint '", item, "' has no valid port (1..65535)"));
    out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  *endpoints = std::move(out);
  return Result::Ok();
}

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // etcd: every key
}

EtcdClient::EtcdClient(std::vector<std::string> endpoints) : endpoints_(std::move(endpoints)) { InitCurlOnce(); }

EtcdClient::~EtcdClient() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

std::string EtcdClient::current_endpoint() const { return endpoints_[current_ % endpoints_.size()]; }

std::string EtcdClient::endpoints_text() const {
  std::string s = "etcd://";
  for (size_t i = 0; i < endpoints_.size(); ++i) s += (i ? "," : "") + endpoints_[i];
  return s;
}

void* EtcdClient::TakeHandle() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void EtcdClient::ReturnHandle(void* handle) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(handle);
}

Result EtcdClient::PostTo(const std::string& endpoint, const char* path, const std::string& body, Deadline deadline,
                          std::string* reply) {
  CURL* h = static_cast<CURL*>(TakeHandle());
  if (h == nullptr) return Result::Failed("curl_easy_init failed");
  const std::string url = "http://" + endpoint + path;
  const long ms = std::max<long>(1, static_cast<long>(std::min<int64_t>(deadline.RemainingMillis(), 60000)));
  reply->clear();
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_reset(h);  // keeps the connection cache
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM: we are a library in threads
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, reply);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, AbortIfCancelled);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &cancelled_);
  curl_easy_setopt(h, CURLOPT_PROXY, "");  // never through an http_proxy of the environment
  const CURLcode rc = curl_easy_perform(h);
  long http = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  ReturnHandle(h);
  if (rc != CURLE_OK)
    return Result::Failed(Msg("etcd at ", endpoint, ": ", error[0] ? error : curl_easy_strerror(rc)));
  if (http != 200) {
    json j = json::parse(*reply, nullptr, false);
    const std::string what = !j.is_discarded() && j.is_object() ? j.value("message", j.value("error", *reply)) : *reply;
    return Result(llm_datadist::LLM_FAILED, Msg("etcd at ", endpoint, " answered HTTP ", http, ": ", what));
  }
  return Result::Ok();
}

Result EtcdClient::Post(const char* path, const std::string& body, Deadline deadline, std::string* reply) {
  if (cancelled_) return Result::Failed("the directory client is stopping");
  Result last;
  const size_t first = current_;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    const size_t at = (first + i) % endpoints_.size();
    last = PostTo(endpoints_[at], path, body, deadline, reply);
    // An HTTP answer means etcd is there: its verdict stands.
    if (last.ok() || last.message().find("answered HTTP") != std::string::npos) {
      current_ = at;
      return last;
    }
    if (deadline.Expired() || cancelled_) break;
  }
  return last;
}

Result EtcdClient::Grant(int64_t ttl_s, Deadline deadline, int64_t* lease) {
  std::string reply;
  LDD_RETURN_IF_ERROR(Post("/v3/lease/grant", json{{"TTL", ttl_s}}.dump(), deadline, &reply));
  json j = json::parse(reply, nullptr, false);
  if (j.is_discarded() || (*lease = Int64Field(j, "ID")) == 0)
    return Result::Failed(Msg("etcd granted no lease: ", reply));
  return Result::Ok();
}

Result EtcdClient::KeepAlive(int64_t lease, Deadline deadline, int64_t* ttl_left) {
  std::string reply;
  LDD_RETURN_IF_ERROR(Post("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}.dump(), deadline, &reply));
  json j = json::parse(reply, nullptr, false);  // one streamed message: {"result": {...}}
  if (j.is_discarded() || !j.contains("result")) return Result::Failed(Msg("etcd keep-alive answer: ", reply));
  *ttl_left = Int64Field(j["result"], "TTL");
  return Result::Ok();
}

Result EtcdClient::Revoke(int64_t lease, Deadline deadline) {
  std::string reply;
  Result r = Post("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump(), deadline, &reply);
  // A lease that already expired is gone too.
  if (!r.ok() && r.message().find("lease not found") != std::string::npos) return Result::Ok();
  return r;
}

Result EtcdClient::PutIfAbsent(const std::string& key, const std::string& value, int64_t lease, Deadline deadline,
                               bool* created, EtcdKeyValue* existing) {
  const std::string k = Base64Encode(key);
  json body = {
      {"compare", json::array({{{"key", k}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}}})},
      {"success",
       json::array({{{"request_put", {{"key", k}, {"value", Base64Encode(value)}, {"lease", std::to_string(lease)}}}}})},
      {"failure", json::array({{{"request_range", {{"key", k}}}}})}};
  std::string reply;
  LDD_RETURN_IF_ERROR(Post("/v3/kv/txn", body.dump(), deadline, &reply));
  json j = json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Result::Failed(Msg("etcd transaction answer: ", reply));
  *created = j.value("succeeded", false);
  if (!*created) {
    const json* kvs = nullptr;
    if (j.contains("responses") && j["responses"].is_array() && !j["responses"].empty())
      kvs = &j["responses"][0]["response_range"]["kvs"];
    if (kvs != nullptr && kvs->is_array() && !kvs->empty()) ParseKv((*kvs)[0], existing);
  }
  return Result::Ok();
}

Result EtcdClient::PutIfLease(const std::string& key, const std::string& value, int64_t lease, Deadline deadline,
                              bool* written) {
  const std::string k = Base64Encode(key);
  json body = {
      {"compare", json::array({{{"key", k}, {"target", "LEASE"}, {"result", "EQUAL"}, {"lease", std::to_string(lease)}}})},
      {"success",
       json::array({{{"request_put", {{"key", k}, {"value", Base64Encode(value)}, {"lease", std::to_string(lease)}}}}})}};
  std::string reply;
  LDD_RETURN_IF_ERROR(Post("/v3/kv/txn", body.dump(), deadline, &reply));
  json j = json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Result::Failed(Msg("etcd transaction answer: ", reply));
  *written = j.value("succeeded", false);
  return Result::Ok();
}

Result EtcdClient::Get(const std::string& key, Deadline deadline, bool* found, EtcdKeyValue* kv) {
  std::string reply;
  LDD_RETURN_IF_ERROR(Post("/v3/kv/range", json{{"key", Base64Encode(key)}}.dump(), deadline, &reply));
  json j = json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Result::Failed(Msg("etcd range answer: ", reply));
  *found = j.contains("kvs") && j["kvs"].is_array() && !j["kvs"].empty() && ParseKv(j["kvs"][0], kv);
  return Result::Ok();
}

Result EtcdClient::List(const std::string& prefix, Deadline deadline, std::vector<EtcdKeyValue>* kvs,
                        int64_t* revision) {
  std::string reply;
  json body = {{"key", Base64Encode(prefix)}, {"range_end", Base64Encode(PrefixRangeEnd(prefix))}};
  LDD_RETURN_IF_ERROR(Post("/v3/kv/range", body.dump(), deadline, &reply));
  json j = json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Result::Failed(Msg("etcd range answer: ", reply));
  kvs->clear();
  if (j.contains("kvs") && j["kvs"].is_array()) {
    for (const auto& e : j["kvs"]) {
      EtcdKeyValue kv;
      if (ParseKv(e, &kv)) kvs->push_back(std::move(kv));
    }
  }
  *revision = j.contains("header") ? Int64Field(j["header"], "revision") : 0;
  return Result::Ok();
}

// --- EtcdWatch ---

EtcdWatch::EtcdWatch() {
  InitCurlOnce();
  multi_ = curl_multi_init();
}

EtcdWatch::~EtcdWatch() {
  Close();
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void EtcdWatch::Close() {
  if (easy_ != nullptr) {
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), static_cast<CURL*>(easy_));
    curl_easy_cleanup(static_cast<CURL*>(easy_));
    easy_ = nullptr;
  }
  if (headers_ != nullptr) {
    curl_slist_free_all(static_cast<curl_slist*>(headers_));
    headers_ = nullptr;
  }
  buffer_.clear();
  created_ = false;
  ended_ = false;
}

Result EtcdWatch::Open(const std::string& endpoint, const std::string& prefix, int64_t start_revision) {
  Close();
  json create = {{"key", Base64Encode(prefix)}, {"range_end", Base64Encode(PrefixRangeEnd(prefix))}};
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  body_ = json{{"create_request", create}}.dump();
  CURL* h = curl_easy_init();
  if (h == nullptr) return Result::Failed("curl_easy_init failed");
  const std::string url = "http://" + endpoint + "/v3/watch";
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body_.size()));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &buffer_);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  // A stream with no traffic is fine; a peer that vanished is noticed by
  // TCP keep-alive (and the keep-alive requests fail before that).
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 2L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 1L);
  easy_ = h;
  if (curl_multi_add_handle(static_cast<CURLM*>(multi_), h) != CURLM_OK) {
    Close();
    return Result::Failed("curl_multi_add_handle failed");
  }
  return Result::Ok();
}

void EtcdWatch::Wake() { curl_multi_wakeup(static_cast<CURLM*>(multi_)); }

bool EtcdWatch::Poll(int timeout_ms, const Sink& sink) {
  CURLM* m = static_cast<CURLM*>(multi_);
  if (easy_ == nullptr) {
    curl_multi_poll(m, nullptr, 0, timeout_ms, nullptr);  // still wakeable
    return false;
  }
  int running = 0;
  curl_multi_perform(m, &running);
  Feed(sink);
  if (running == 0 || ended_) {
    Close();
    return false;
  }
  curl_multi_poll(m, nullptr, 0, timeout_ms, nullptr);
  curl_multi_perform(m, &running);
  Feed(sink);
  if (running == 0 || ended_) {
    Close();
    return false;
  }
  return true;
}

void EtcdWatch::Feed(const Sink& sink) {
  for (size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
    const std::string line = buffer_.substr(0, nl);
    buffer_.erase(0, nl + 1);
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    if (!j.contains("result")) {
      LDD_LOG(Warn) << "etcd watch: " << line;
      continue;
    }
    const json& r = j["result"];
    if (r.value("created", false)) created_ = true;
    if (r.value("canceled", false)) ended_ = true;
    if (!r.contains("events") || !r["events"].is_array()) continue;
    for (const auto& e : r["events"]) {
      Event ev;
      ev.deleted = e.value("type", std::string()) == "DELETE";
      if (e.contains("kv") && ParseKv(e["kv"], &ev.kv)) sink(ev);
    }
  }
}

}  // namespace lldd
