// The data each benchmark cache row holds, so a warm-up call can prove the
// path moved the right bytes before any speed is reported.
#ifndef LLM_DATADIST_TOOLS_BENCH_ROW_PATTERN_H_
#define LLM_DATADIST_TOOLS_BENCH_ROW_PATTERN_H_

#include <cstdint>

#include "common/pattern.h"

namespace lldd_bench {

// The serving side fills its caches from kServerSeed, the benchmarking
// side from kClientSeed: a row that was not moved never looks moved.
constexpr uint64_t kServerSeed = 0x5E4E4;
constexpr uint64_t kClientSeed = 0xC11E47;

inline uint64_t RowSeed(uint64_t seed, uint32_t tensor, uint64_t row) {
  return lldd_tools::RegionSeed({seed, tensor, row});
}

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_ROW_PATTERN_H_
