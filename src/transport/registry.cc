#include "transport/registry.h"

#include <algorithm>
#include <cstring>

namespace lldd {

const std::vector<TransportKind>& RegisteredTransports() {
  static const std::vector<TransportKind> kinds = [] {
    std::vector<TransportKind> v = DeclaredTransports();
    std::stable_sort(v.begin(), v.end(), [](const TransportKind& a, const TransportKind& b) {
      return a.preference != b.preference ? a.preference < b.preference : std::strcmp(a.name, b.name) < 0;
    });
    return v;
  }();
  return kinds;
}

std::string RegisteredTransportNames() {
  std::string names;
  for (const auto& k : RegisteredTransports()) names += (names.empty() ? "" : ", ") + std::string(k.name);
  return names;
}

bool IsRegisteredTransport(const std::string& name) {
  const auto& kinds = RegisteredTransports();
  return std::any_of(kinds.begin(), kinds.end(), [&](const TransportKind& k) { return name == k.name; });
}

}  // namespace lldd
