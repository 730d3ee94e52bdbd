// The TCP data path, serving side: answers READ and WRITE requests on one
// connection from the local region table, until the connection ends.
//
// Every request is validated before a byte moves: each segment must lie
// inside a live region. A refused request is answered with the reason and
// the connection stays usable; a malformed frame closes the connection
// (only this one) with a log line.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TCP_DATA_SERVER_H_
#define LLM_DATADIST_SRC_TRANSPORT_TCP_DATA_SERVER_H_

#include <string>

#include "memory/region_table.h"
#include "net/socket.h"

namespace lldd {

// The longest a peer's request may run here, whatever timeout it names:
// the regions it uses stay leased meanwhile. (Removing a region cancels
// requests that still use it after the region table's grace period.)
constexpr int64_t kMaxPeerRequestMs = 60000;

// How long we serve a request whose peer named `requested_ms`: a little
// past the peer's own deadline (it stops waiting then), at least 100 ms,
// and never past kMaxPeerRequestMs + 1 s (the u32 would allow 49 days).
int64_t ServeTimeoutMs(uint32_t requested_ms);

// Runs until the peer closes the connection, a frame is malformed, or the
// socket is shut down; returns why it stopped. Requests that touch GPU
// memory are staged through pinned slabs on GPU `device_id`.
std::string ServeDataConnection(const Socket& socket, RegionTable& regions, int device_id = 0);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TCP_DATA_SERVER_H_
