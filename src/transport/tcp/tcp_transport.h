// The TCP data path as a transport: reaches any host, moves any host
// memory, and needs a thread of the peer to serve each request.
//
// Data connections go through the engine's listener (LinkHandle::DialJoin):
// the connecting side of a link dials "forward" connections that the other
// side serves; when the accepting side needs connections of its own it
// asks its peer (over the control channel) to dial "reverse" ones, which
// land in its pool.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_TRANSPORT_H_
#define LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_TRANSPORT_H_

#include <memory>

#include "transport/transport.h"

namespace lldd {

// What a joining connection is for (its join_info byte).
enum class TcpJoin : uint8_t {
  kForward = 1,  // the dialing side sends requests; we serve them
  kReverse = 2,  // we send requests on it (it was dialed at our request)
};

// The connections per link when llm.TcpConnectionsPerLink is not set:
// enough for the cores of this machine to drive, within reason.
uint32_t DefaultTcpConnections();

std::unique_ptr<Transport> MakeTcpTransport();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_TRANSPORT_H_
