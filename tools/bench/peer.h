// The serving side of the benchmark: owns a library instance and its
// caches and does what the benchmarking side asks over the side channel
// (see peer_protocol.h). It never takes part in a transfer: Pull and Push
// are one-sided, as in production, where the prefill engine is busy.
#ifndef LLM_DATADIST_TOOLS_BENCH_PEER_H_
#define LLM_DATADIST_TOOLS_BENCH_PEER_H_

#include <cstdint>
#include <string>

#include "common/line_channel.h"

namespace lldd_bench {

// Serves one session until "quit" or the channel closes. The library
// listens on listen_host:library_port (0: any free port); socket_port is
// announced for the raw-socket baseline. Returns a process exit code.
int ServePeerSession(lldd_tools::LineChannel& channel, const std::string& listen_host, uint16_t library_port,
                     uint16_t socket_port);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_PEER_H_
