#include "common/datadist_setup.h"

#include <cstdio>
#include <vector>

namespace lldd_tools {

using namespace llm_datadist;

std::map<AscendString, AscendString> BuildOptions(const InstanceConfig& config) {
  std::map<AscendString, AscendString> options{{OPTION_DEVICE_ID, "0"}};
  if (!config.listen.empty()) options[OPTION_LISTEN_IP_INFO] = config.listen.c_str();
  if (!config.transport.empty()) options[OPTION_TRANSFER_BACKEND] = config.transport.c_str();
  if (config.wait_ms > 0) options[OPTION_SYNC_CACHE_WAIT_TIME] = std::to_string(config.wait_ms).c_str();
  if (config.tcp_connections > 0)
    options[llm_datadist::LlmDataDist::OPTION_TCP_CONNECTIONS_PER_LINK] = std::to_string(config.tcp_connections).c_str();
  for (const auto& [key, value] : config.extra) options[AscendString(key.c_str())] = AscendString(value.c_str());
  return options;
}

std::unique_ptr<LlmDataDist> StartInstance(uint64_t cluster_id, LlmRole role, const InstanceConfig& config,
                                           std::string* error) {
  auto dd = std::make_unique<LlmDataDist>(cluster_id, role);
  Status st = dd->Initialize(BuildOptions(config));
  if (st != LLM_SUCCESS) {
    *error = DescribeFailure(st);
    return nullptr;
  }
  return dd;
}

bool LinkTo(LlmDataDist& dd, uint64_t remote_cluster, const std::string& host, uint16_t port, int32_t timeout_ms,
            std::string* error) {
  ClusterInfo cluster;
  cluster.remote_cluster_id = remote_cluster;
  cluster.remote_role_type = static_cast<int32_t>(LlmRole::kPrompt);
  if (!host.empty()) {
    IpInfo remote;
    remote.ip = host.c_str();
    remote.port = port;
    cluster.remote_ip_infos.push_back(remote);
  }
  std::vector<Status> rets;
  Status st = dd.LinkLlmClusters({cluster}, rets, timeout_ms);
  if (st == LLM_SUCCESS && rets.size() == 1 && rets[0] == LLM_SUCCESS) return true;
  const std::string where = host.empty() ? "cluster " + std::to_string(remote_cluster) + " (through the directory)"
                                         : host + ":" + std::to_string(port);
  *error = "LinkLlmClusters to " + where + " failed: " +
           DescribeFailure(rets.size() == 1 && rets[0] != LLM_SUCCESS ? rets[0] : st);
  return false;
}

std::string DescribeFailure(Status status) {
  char code[16];
  std::snprintf(code, sizeof(code), "0x%X", status);
  std::string text = std::string(LlmDataDist::GetStatusName(status)) + " (" + code + ")";
  const std::string why = LlmDataDist::GetLastErrorMessage() ? LlmDataDist::GetLastErrorMessage() : "";
  // The library's message usually names the status already.
  if (why.find(code) != std::string::npos) return why;
  return why.empty() ? text : text + ": " + why;
}

bool ParseHostPort(const std::string& text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  std::string h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  unsigned long value = 0;
  for (size_t i = colon + 1; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + static_cast<unsigned long>(text[i] - '0');
    if (value > 65535) return false;
  }
  *host = h;
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace lldd_tools
