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

#include <cstdint>
#include <memory>
#include <vector>

#include "transport/transport.h"

namespace lldd {

// What a joining connection is for (its join_info byte).
enum class TcpJoin : uint8_t {
  kForward = 1,  // the dialing side sends requests; we serve them
  kReverse = 2,  // we send requests on it (it was dialed at our request)
};

// A join's info (and a reverse-dial request's body): the kind, and for a
// reverse connection the id of the dial that asked for it, so the pool can
// match the connection to its own promise.
std::vector<uint8_t> EncodeTcpJoin(uint8_t kind, uint64_t dial_id);
bool DecodeTcpJoin(const std::vector<uint8_t>& bytes, uint8_t* kind, uint64_t* dial_id);

// The connections per link when llm.TcpConnectionsPerLink is not set:
// enough for the cores of this machine to drive, within reason.
uint32_t DefaultTcpConnections();

std::unique_ptr<Transport> MakeTcpTransport();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_TCP_TRANSPORT_H_
