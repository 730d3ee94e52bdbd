// How many TCP connections this process holds to a given port: the
// benchmark's way to learn how many connections the library's link really
// uses (the control channel and the data connections all go to the peer's
// listen port), so the raw-socket limit can use as many.
#ifndef LLM_DATADIST_TOOLS_BENCH_LINK_SOCKETS_H_
#define LLM_DATADIST_TOOLS_BENCH_LINK_SOCKETS_H_

#include <cstdint>

namespace lldd_bench {

// Established TCP connections of this process whose remote port is
// `remote_port`; -1 where /proc cannot tell.
int CountConnectionsTo(uint16_t remote_port);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_LINK_SOCKETS_H_
