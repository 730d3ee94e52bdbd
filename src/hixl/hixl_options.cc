#include "hixl/hixl_options.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <set>

#include "common/rdma_devices.h"
#include "adxl/adxl_types.h"
#include "hixl/hixl_types.h"
#include "transport/registry.h"

namespace lldd::hixl_impl {
namespace {

using Json = nlohmann::json;

Result Invalid(const std::string& key, const std::string& value, const std::string& why) {
  return Result::ParamInvalid(Msg("option ", key, "='", value, "': ", why));
}

bool ParseInt(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  const int64_t v = std::stoll(s);
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

// A JSON number or a string of digits, within [lo, hi].
bool JsonInt(const Json& j, int64_t lo, int64_t hi, int64_t* out) {
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
  }
  return j.is_string() && ParseInt(j.get<std::string>(), lo, hi, out);
}

// A JSON number or numeric string strictly between 0 and 1.
bool JsonFraction(const Json& j, double* out) {
  double v = 0;
  if (j.is_number()) {
    v = j.get<double>();
  } else if (j.is_string()) {
    const std::string s = j.get<std::string>();
    size_t used = 0;
    try {
      v = std::stod(s, &used);
    } catch (...) {
      return false;
    }
    if (used != s.size()) return false;
  } else {
    return false;
  }
  if (!(v > 0 && v < 1)) return false;
  *out = v;
  return true;
}

const std::set<std::string>& KnownProtocols() {
  static const std::set<std::string> k = {"roce:device", "hccs:device", "ub_ctp:device", "uboe:device",
                                          "ub_rtp:device", "roce:host", "ub_ctp:host"};
  return k;
}

// GlobalResourceConfig: each field checked; the protocols picked.
Result ParseGlobalConfig(const std::string& value, HixlOptions* out) {
  const std::string key = ::hixl::OPTION_GLOBAL_RESOURCE_CONFIG;
  if (value.empty()) return Result::Ok();
  Json j = Json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Invalid(key, value, "not a JSON object");
  using Check = std::function<bool(const Json&)>;
  int64_t n = 0;
  auto range = [&n](int64_t lo, int64_t hi) { return Check([lo, hi, &n](const Json& v) { return JsonInt(v, lo, hi, &n); }); };
  double high = 0;
  double low = 0;
  std::vector<std::string> protocols;
  const std::map<std::string, Check> fields = {
      {"comm_resource_config.protocol_desc",
       [&protocols](const Json& v) {
         if (v.is_string()) protocols.push_back(v.get<std::string>());
         else if (v.is_array() && !v.empty())
           for (const auto& e : v) {
             if (!e.is_string()) return false;
             protocols.push_back(e.get<std::string>());
           }
         else return false;
         for (const auto& p : protocols)
           if (!KnownProtocols().count(p)) return false;
         return true;
       }},
      {"comm_resource_config.listen_port", range(1, 65535)},
      {"comm_resource_config.qos", range(0, 7)},
      {"comm_resource_config.max_active_channels", range(1, INT32_MAX)},
      {"local_comm_res_path", [](const Json& v) { return v.is_string() && !v.get<std::string>().empty(); }},
      {"connect_pool.thread_num", range(1, 64)},
      {"connect_pool.task_queue_capacity", range(1, 65535)},
      {"channel_pool.max_channel", range(1, 512)},
      {"channel_pool.high_waterline", [&high](const Json& v) { return JsonFraction(v, &high); }},
      {"channel_pool.low_waterline", [&low](const Json& v) { return JsonFraction(v, &low); }},
      {"fabric_memory.max_capacity", range(1, 1024)},
      {"fabric_memory.start_address", range(0, 1024)},
      {"fabric_memory.task_stream_num", range(1, 8)},
      {"fabric_memory.enable_aicpu_unfold", [](const Json& v) { return v.is_boolean(); }},
  };
  for (const auto& [field, v] : j.items()) {
    auto it = fields.find(field);
    if (it == fields.end()) return Invalid(key, value, Msg("unknown field '", field, "'"));
    if (!it->second(v)) return Invalid(key, value, Msg("field '", field, "' has an invalid value ", v.dump()));
  }
  if (j.contains("channel_pool.high_waterline") != j.contains("channel_pool.low_waterline") ||
      (j.contains("channel_pool.high_waterline") && !(low < high)))
    return Invalid(key, value, "channel_pool.low_waterline and high_waterline go together, low below high");
  if (j.contains("connect_pool.thread_num") && JsonInt(j["connect_pool.thread_num"], 1, 64, &n))
    out->connect_threads = static_cast<uint32_t>(n);
  if (j.contains("connect_pool.task_queue_capacity") && JsonInt(j["connect_pool.task_queue_capacity"], 1, 65535, &n))
    out->connect_queue = static_cast<uint32_t>(n);
  if (protocols.empty()) return Result::Ok();
  bool same_host = false;
  bool rdma = false;
  for (const auto& p : protocols) (p.rfind("roce:", 0) == 0 ? rdma : same_host) = true;
  // Only RDMA named: the network path, as RDMA over UCX where this build
  // has UCX and the host an RDMA device; else TCP (UCX over TCP is no
  // faster than ours and leaves remote keys unenforced).
  if (rdma && !same_host) {
    const char* backend = IsRegisteredTransport("ucx") && HasRdmaDevice() ? "ucx" : "tcp";
    out->engine[llm_datadist::OPTION_TRANSFER_BACKEND] = backend;
    out->summary += Msg(" protocols -> ", backend, ";");
  } else {
    out->summary += " protocols -> auto (shm/cuda_ipc on one host, else the network);";
  }
  return Result::Ok();
}

Result ParseFlag(const std::string& key, const std::string& value, bool* out) {
  if (value != "0" && value != "1") return Invalid(key, value, "must be \"0\" or \"1\"");
  *out = value == "1";
  return Result::Ok();
}

}  // namespace

Result ParseHixlOptions(const OptionMap& options, HixlOptions* out) {
  HixlOptions o;
  bool fabric = false;
  bool buffer_pool = false;
  for (const auto& [k, v] : options) {
    const std::string key = k.GetString();
    const std::string value = v.GetString();
    int64_t n = 0;
    if (key == kOptionAsyncTimeout) {
      if (!ParseInt(value, 1, INT32_MAX, &n)) return Invalid(key, value, "must be a positive number of milliseconds");
      o.async_timeout_ms = n;
    } else if (key.rfind("llm.", 0) == 0) {
      o.engine[k] = v;  // the engine checks its own options
    } else if (key == ::hixl::OPTION_ENABLE_USE_FABRIC_MEM) {
      LDD_RETURN_IF_ERROR(ParseFlag(key, value, &fabric));
    } else if (key == ::hixl::OPTION_AUTO_CONNECT) {
      LDD_RETURN_IF_ERROR(ParseFlag(key, value, &o.auto_connect));
    } else if (key == ::hixl::OPTION_RDMA_TRAFFIC_CLASS || key == ::adxl::OPTION_RDMA_TRAFFIC_CLASS) {
      if (!ParseInt(value, 0, 255, &n) || n % 4 != 0) return Invalid(key, value, "must be a multiple of 4 in [0, 255]");
    } else if (key == ::hixl::OPTION_RDMA_SERVICE_LEVEL || key == ::adxl::OPTION_RDMA_SERVICE_LEVEL) {
      if (!ParseInt(value, 0, 7, &n)) return Invalid(key, value, "must be in [0, 7]");
    } else if (key == ::hixl::OPTION_BUFFER_POOL || key == ::adxl::OPTION_BUFFER_POOL) {
      const auto colon = value.find(':');
      int64_t size = 0;
      if (colon == std::string::npos || !ParseInt(value.substr(0, colon), 0, 1 << 20, &n) ||
          !ParseInt(value.substr(colon + 1), 0, 1 << 20, &size) || ((n == 0) != (size == 0)))
        return Invalid(key, value, "must be BUFFER_NUM:BUFFER_SIZE_MB (\"0:0\" turns it off)");
      buffer_pool = true;
    } else if (key == ::hixl::OPTION_LOCAL_COMM_RES || key == ::adxl::OPTION_LOCAL_COMM_RES) {
      if (!value.empty()) {
        Json j = Json::parse(value, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return Invalid(key, value, "not a JSON object");
      }
    } else if (key == ::hixl::OPTION_GLOBAL_RESOURCE_CONFIG) {
      LDD_RETURN_IF_ERROR(ParseGlobalConfig(value, &o));
    } else {
      return Result::ParamInvalid(Msg("unknown option '", key, "'"));
    }
  }
  if (fabric && buffer_pool)
    return Result::ParamInvalid(Msg("options ", ::hixl::OPTION_ENABLE_USE_FABRIC_MEM, " and ", ::hixl::OPTION_BUFFER_POOL,
                                    " cannot be set together"));
  if (o.engine.find(llm_datadist::OPTION_DEVICE_ID) == o.engine.end()) o.engine[llm_datadist::OPTION_DEVICE_ID] = "0";
  if (o.auto_connect) o.summary += " auto connect;";
  *out = std::move(o);
  return Result::Ok();
}

}  // namespace lldd::hixl_impl
