#include "bench/block_lists.h"

#include <algorithm>
#include <utility>

#include "common/pattern.h"

namespace lldd_bench {
namespace {

std::vector<uint64_t> Permutation(uint64_t n, uint64_t seed) {
  std::vector<uint64_t> p(n);
  for (uint64_t i = 0; i < n; ++i) p[i] = i;
  uint64_t state = seed;
  for (uint64_t i = n; i > 1; --i) {
    state = lldd_tools::SplitMix64(state);
    std::swap(p[i - 1], p[state % i]);
  }
  return p;
}

}  // namespace

BlockLists MakeBlockLists(const Config& config, uint64_t seed) {
  BlockLists l;
  if (config.unit == Unit::kCache) {
    // Remote batch 1 <-> local batch 0, whichever way the data flows.
    l.src = {config.op == Op::kPull ? 1U : 0U};
    l.dst = {config.op == Op::kPull ? 0U : 1U};
  } else if (config.contiguous) {
    l.src.resize(config.blocks_per_call);
    for (uint64_t i = 0; i < config.blocks_per_call; ++i) l.src[i] = i;
    l.dst = l.src;
  } else {
    l.src = Permutation(config.blocks_per_call, lldd_tools::RegionSeed({seed, 1}));
    l.dst = Permutation(config.blocks_per_call, lldd_tools::RegionSeed({seed, 2}));
  }
  return l;
}

}  // namespace lldd_bench
