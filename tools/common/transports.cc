#include "common/transports.h"

namespace lldd_tools {

const std::vector<TransportInfo>& KnownTransports() {
  static const std::vector<TransportInfo> known = {
      {"auto", "the fastest path the link supports"},
      {"tcp", "sockets, any host"},
      {"shm", "shared memory, same host"},
      {"ucx", "UCX: RDMA and more"},
  };
  return known;
}

std::vector<std::string> KnownTransportNames() {
  std::vector<std::string> names;
  for (const auto& t : KnownTransports()) names.emplace_back(t.name);
  return names;
}

std::string KnownTransportsHelp() {
  std::string out;
  for (const auto& t : KnownTransports())
    out += (out.empty() ? "" : ", ") + std::string(t.name) + " (" + t.description + ")";
  return out;
}

}  // namespace lldd_tools
