#include "engine/options.h"

#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "net/socket.h"
#include "transport/registry.h"

namespace lldd {
namespace {

using llm_datadist::AscendString;

const std::string* Find(const OptionMap& options, const char* key, std::string* storage) {
  auto it = options.find(AscendString(key));
  if (it == options.end()) return nullptr;
  *storage = it->second.GetString();
  return storage;
}

Result Invalid(const char* key, const std::string& value, const std::string& why) {
  return Result::ParamInvalid(Msg("option ", key, "='", value, "': ", why));
}

bool ParseUnsigned(const std::string& s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  uint64_t v = std::stoull(s);
  if (v > max) return false;
  *out = v;
  return true;
}

Result ParseBufPoolCfg(const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
  const char* key = llm_datadist::OPTION_BUF_POOL_CFG;
  if (j.is_discarded() || !j.is_object()) return Invalid(key, value, "not a JSON object");
  if (j.contains("buf_pool_size") && !j["buf_pool_size"].is_number_unsigned())
    return Invalid(key, value, "buf_pool_size must be a non-negative integer");
  if (j.contains("buf_cfg")) {
    if (!j["buf_cfg"].is_array()) return Invalid(key, value, "buf_cfg must be an array");
    for (const auto& e : j["buf_cfg"]) {
      for (const char* field : {"total_size", "blk_size", "max_buf_size"}) {
        if (!e.is_object() || !e.contains(field) || !e[field].is_number_unsigned())
          return Invalid(key, value, Msg("every buf_cfg entry needs a non-negative integer ", field));
      }
    }
  }
  return Result::Ok();
}

Result ParseLocalCommRes(const std::string& value, EngineOptions* out) {
  const char* key = llm_datadist::OPTION_LOCAL_COMM_RES;
  if (value.empty()) return Result::Ok();
  nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Invalid(key, value, "not a JSON object");
  if (!j.contains("server_list") || !j["server_list"].is_array() || j["server_list"].empty())
    return Invalid(key, value, "needs a non-empty server_list array");
  for (const auto& server : j["server_list"]) {
    if (!server.is_object() || !server.contains("device") || !server["device"].is_array())
      return Invalid(key, value, "every server_list entry needs a device array");
    for (const auto& dev : server["device"]) {
      if (!dev.is_object() || !dev.contains("device_id")) return Invalid(key, value, "every device needs device_id");
      const auto& id = dev["device_id"];
      const bool numeric = id.is_number_unsigned() ||
                           (id.is_string() && !id.get<std::string>().empty() &&
                            id.get<std::string>().find_first_not_of("0123456789") == std::string::npos);
      if (!numeric) return Invalid(key, value, "device_id must be a number");
      if (dev.contains("device_ip")) {
        if (!dev["device_ip"].is_string() || !IsNumericAddress(dev["device_ip"].get<std::string>()))
          return Invalid(key, value, "device_ip must be a numeric IP address");
        out->local_device_ip = dev["device_ip"].get<std::string>();
      }
    }
  }
  return Result::Ok();
}

}  // namespace

Result ParseListenOption(const OptionMap& options, EngineOptions* out) {
  std::string v;
  out->listen = false;
  if (const std::string* s = Find(options, llm_datadist::OPTION_LISTEN_IP_INFO, &v)) {
    Result r = ParseHostPort(*s, &out->listen_host, &out->listen_port);
    if (!r.ok()) return Invalid(llm_datadist::OPTION_LISTEN_IP_INFO, *s, r.message() + " (exactly one ip:port)");
    out->listen = true;
  }
  return Result::Ok();
}

Result ParseOptions(const OptionMap& options, EngineOptions* out) {
  EngineOptions o;
  std::string v;
  LDD_RETURN_IF_ERROR(ParseListenOption(options, &o));

  const char* key = llm_datadist::OPTION_DEVICE_ID;
  const std::string* s = Find(options, key, &v);
  if (s == nullptr) return Result::ParamInvalid(Msg("option ", key, " is required (e.g. \"0\")"));
  uint64_t n = 0;
  if (!ParseUnsigned(*s, INT32_MAX, &n)) return Invalid(key, *s, "must be a non-negative decimal device index");
  o.device_id = static_cast<int32_t>(n);

  key = llm_datadist::OPTION_SYNC_CACHE_WAIT_TIME;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (!ParseUnsigned(*s, INT32_MAX, &n) || n == 0) return Invalid(key, *s, "must be a positive number of milliseconds");
    o.sync_wait_ms = static_cast<int64_t>(n);
  }

  key = llm_datadist::OPTION_ENABLE_SET_ROLE;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (*s != "1" && *s != "0") return Invalid(key, *s, "must be \"1\" or \"0\"");
    o.enable_set_role = *s == "1";
  }

  key = llm_datadist::OPTION_BUF_POOL_CFG;
  if ((s = Find(options, key, &v)) != nullptr && !s->empty()) LDD_RETURN_IF_ERROR(ParseBufPoolCfg(*s));

  if ((s = Find(options, kOptionMemPoolConfig, &v)) != nullptr && !s->empty())
    LDD_RETURN_IF_ERROR(ParseMemoryPoolConfig(kOptionMemPoolConfig, *s, &o.device_pool));
  if ((s = Find(options, kOptionHostMemPoolConfig, &v)) != nullptr && !s->empty())
    LDD_RETURN_IF_ERROR(ParseMemoryPoolConfig(kOptionHostMemPoolConfig, *s, &o.host_pool));

  key = llm_datadist::OPTION_LOCAL_COMM_RES;
  if ((s = Find(options, key, &v)) != nullptr) LDD_RETURN_IF_ERROR(ParseLocalCommRes(*s, &o));

  key = llm_datadist::OPTION_TRANSFER_BACKEND;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (*s == "auto" || IsRegisteredTransport(*s)) {
      o.backend = *s;
    } else if (*s == "hixl") {
      LDD_LOG(Info) << "option " << key << "='hixl' (the original's backend) runs as 'auto' here";
      o.backend = "auto";
    } else {
      return Invalid(key, *s, Msg("no such data path in this build (available: auto, ", RegisteredTransportNames(), ")"));
    }
  }

  key = kOptionTcpConnections;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (!ParseUnsigned(*s, 64, &n) || n == 0) return Invalid(key, *s, "must be between 1 and 64");
    o.tcp_connections = static_cast<uint32_t>(n);
  }

  key = kOptionCopyThreads;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (!ParseUnsigned(*s, 64, &n)) return Invalid(key, *s, "must be between 0 (one per core) and 64");
    o.copy_threads = static_cast<uint32_t>(n);
  }

  key = kOptionLinkToken;
  if ((s = Find(options, key, &v)) != nullptr) o.link_token = *s;

  key = kOptionDirectory;
  if ((s = Find(options, key, &v)) != nullptr) o.directory = *s;
  key = kOptionDirectoryPrefix;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (s->empty() || s->front() != '/' || s->back() != '/') return Invalid(key, *s, "must start and end with '/'");
    o.directory_prefix = *s;
  }
  key = kOptionDirectoryTtl;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (!ParseUnsigned(*s, 3600, &n) || n == 0) return Invalid(key, *s, "must be a number of seconds in 1..3600");
    o.directory_ttl_s = static_cast<int64_t>(n);
  }

  key = kOptionMaxLinks;
  if ((s = Find(options, key, &v)) != nullptr) {
    if (!ParseUnsigned(*s, kMaxLinksLimit, &n) || n == 0)
      return Invalid(key, *s, Msg("must be between 1 and ", kMaxLinksLimit));
    o.max_links = static_cast<uint32_t>(n);
  }

  key = kOptionMetricsPort;
  if ((s = Find(options, key, &v)) != nullptr && !s->empty()) {
    if (s->find(':') != std::string::npos) {
      if (!ParseHostPort(*s, &o.metrics_host, &o.metrics_port).ok() || o.metrics_port == 0)
        return Invalid(key, *s, "must be a port (\"9464\") or a numeric \"ip:port\", port not 0");
    } else {
      if (!ParseUnsigned(*s, 65535, &n) || n == 0)
        return Invalid(key, *s, "must be a port (\"9464\") or a numeric \"ip:port\", port not 0");
      o.metrics_port = static_cast<uint16_t>(n);
    }
  }

  static const char* known[] = {llm_datadist::OPTION_LISTEN_IP_INFO, llm_datadist::OPTION_DEVICE_ID,
                                llm_datadist::OPTION_SYNC_CACHE_WAIT_TIME, llm_datadist::OPTION_BUF_POOL_CFG,
                                llm_datadist::OPTION_ENABLE_SET_ROLE, llm_datadist::OPTION_LOCAL_COMM_RES,
                                llm_datadist::OPTION_TRANSFER_BACKEND, kOptionTcpConnections, kOptionLinkToken,
                                kOptionCopyThreads, kOptionDirectory, kOptionDirectoryPrefix,
                                kOptionDirectoryTtl, kOptionMaxLinks,
                                kOptionMetricsPort, kOptionMemPoolConfig, kOptionHostMemPoolConfig};
  for (const auto& kv : options) {
    bool is_known = false;
    for (const char* k : known) is_known = is_known || kv.first == AscendString(k);
    if (!is_known) LDD_LOG(Warn) << "ignoring unknown option " << kv.first.GetString();
  }
  *out = o;
  return Result::Ok();
}

}  // namespace lldd
