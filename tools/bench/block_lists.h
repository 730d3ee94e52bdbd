// Which blocks a benchmark call moves.
//
// By default both lists are seeded random permutations, so almost no pair
// of neighbours is adjacent on both sides and the library cannot merge
// them: each block costs what a block costs in a fragmented serving pool.
// --contiguous gives 0..n-1, in order, on both sides, which merges into
// one range.
#ifndef LLM_DATADIST_TOOLS_BENCH_BLOCK_LISTS_H_
#define LLM_DATADIST_TOOLS_BENCH_BLOCK_LISTS_H_

#include <cstdint>
#include <vector>

#include "bench/bench_config.h"

namespace lldd_bench {

// src: rows read, dst: rows written, in the direction data flows (for a
// push, src is local; for a pull, remote). A cache-unit call moves remote
// row 1 into local row 0, or local row 0 into remote row 1.
struct BlockLists {
  std::vector<uint64_t> src;
  std::vector<uint64_t> dst;
};

BlockLists MakeBlockLists(const Config& config, uint64_t seed);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_BLOCK_LISTS_H_
