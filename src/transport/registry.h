// The transports built into the library, as declared by their folders'
// lldd_add_transport() calls (cmake/transports.cmake generates the table).
// The engine learns every data path from here and names none itself.
#ifndef LLM_DATADIST_SRC_TRANSPORT_REGISTRY_H_
#define LLM_DATADIST_SRC_TRANSPORT_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "transport/transport.h"

namespace lldd {

struct TransportKind {
  const char* name;
  int preference;  // auto tries lower first
  std::unique_ptr<Transport> (*make)();
};

// The generated table, in declaration order.
std::vector<TransportKind> DeclaredTransports();
// The same, by preference (then name), computed once.
const std::vector<TransportKind>& RegisteredTransports();
// "shm, tcp" (for messages and option validation).
std::string RegisteredTransportNames();
bool IsRegisteredTransport(const std::string& name);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_REGISTRY_H_
