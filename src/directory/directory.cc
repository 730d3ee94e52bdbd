#include "directory/directory.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>

namespace lldd {

using nlohmann::json;

std::string DirectoryEntry::ToJson() const {
  json j = {{"cluster_id", std::to_string(cluster_id)},
            {"role", role},
            {"instance", std::to_string(instance_id)},
            {"host", host},
            {"port", port},
            {"paths", paths}};
  return j.dump();
}

bool DirectoryEntry::FromJson(const std::string& text, DirectoryEntry* out) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  try {
    DirectoryEntry e;
    e.cluster_id = std::stoull(j.at("cluster_id").get<std::string>());
    e.role = j.at("role").get<int32_t>();
    e.instance_id = std::stoull(j.at("instance").get<std::string>());
    e.host = j.at("host").get<std::string>();
    e.port = j.at("port").get<uint16_t>();
    e.paths = j.at("paths").get<std::vector<std::string>>();
    *out = std::move(e);
    return true;
  } catch (...) {
    return false;
  }
}

std::string AdvertisedHost(const std::string& listen_host, const std::string& preferred) {
  if (!listen_host.empty() && listen_host != "0.0.0.0" && listen_host != "::") return listen_host;
  if (!preferred.empty()) return preferred;
  std::string found = "127.0.0.1";
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return found;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN] = {0};
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    found = text;
    break;
  }
  freeifaddrs(list);
  return found;
}

}  // namespace lldd
