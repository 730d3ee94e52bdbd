// Commands the benchmark sends to its serving peer over the side channel
// (a pipe to a forked child, or TCP to a `--listen` process on another
// machine). One line each way:
//
//   (on connect)                                  <- "hello <socket baseline port>"
//   init <transport|-> <wait ms> <tcp conns>      <- "ok <library port>" | "unavailable <why>" | "error <why>"
//   cache <allocated|registered> <tensors> <rows> <row bytes> <seed>
//                                                 <- "ok <cache id>" | "error <why>"
//   fill <cache id> <seed> <row>...               <- "ok": rows of every tensor get RowSeed(seed, t, row)
//   check <cache id> <seed> <dst row>:<src row>... <- "ok" | "error <why>": dst rows hold RowSeed(seed, t, src row)
//   free <cache id>                               <- "ok"
//   hixl <transport|-> <slots> <slot bytes> <seed> <- "ok <engine name> <region address>" | "error <why>"
//                                                 a HIXL engine in place of the library instance, its
//                                                 region filled as cache kHixlRegionId's rows (tensor 0)
//   quit                                          <- "ok", the session ends
//
// `init` (re)creates the peer's library instance with that data path, so
// one peer serves every transport of a sweep.
#ifndef LLM_DATADIST_TOOLS_BENCH_PEER_PROTOCOL_H_
#define LLM_DATADIST_TOOLS_BENCH_PEER_PROTOCOL_H_

#include <cstdint>

namespace lldd_bench {

constexpr uint64_t kPeerClusterId = 1;
constexpr uint64_t kBenchClusterId = 2;
// fill/check name the HIXL engine's region by this id.
constexpr int64_t kHixlRegionId = -1;

// In two-machine mode (--listen HOST:PORT) the library listens on PORT,
// the side channel on PORT+1 and the raw-socket baseline on PORT+2.
constexpr uint16_t kControlPortOffset = 1;
constexpr uint16_t kSocketPortOffset = 2;

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_PEER_PROTOCOL_H_
