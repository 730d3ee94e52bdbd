// The same-host data path as a transport (see shm_endpoint.h for how it
// moves bytes). Its connection info is the host identity (boot id and
// namespaces: equal only where memory can be shared and pids named) and,
// on a listening instance, the name of its abstract Unix socket, over which
// the connecting side opens the link's shm channel.
#ifndef LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_TRANSPORT_H_
#define LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_TRANSPORT_H_

#include <memory>

#include "transport/transport.h"

namespace lldd {

std::unique_ptr<Transport> MakeShmTransport();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_TRANSPORT_H_
