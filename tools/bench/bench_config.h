// What one benchmark row measures, and the sweeps that produce the rows.
#ifndef LLM_DATADIST_TOOLS_BENCH_BENCH_CONFIG_H_
#define LLM_DATADIST_TOOLS_BENCH_BENCH_CONFIG_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace lldd_bench {

enum class Op { kPull, kPush };
// kBlocks: PullKvBlocks/PushKvBlocks on a paged cache.
// kCache: PullKvCache/PushKvCache of one row of a [batch, row] cache.
enum class Unit { kBlocks, kCache };

const char* OpName(Op op);
const char* UnitName(Unit unit);

constexpr const char kMemoryAllocated[] = "allocated";    // AllocateCache on the serving side
constexpr const char kMemoryRegistered[] = "registered";  // RegisterKvCache of user memory there

struct Config {
  std::string transport;
  std::string memory;
  Op op = Op::kPull;
  Unit unit = Unit::kBlocks;
  uint64_t block_bytes = 0;      // per tensor; for kCache, the row
  uint64_t blocks_per_call = 1;  // 1 for kCache
  uint32_t threads = 1;
  uint32_t tensors = 1;
  bool contiguous = false;

  uint64_t bytes_per_call() const { return block_bytes * blocks_per_call * tensors; }
  // Rows of the caches on both sides: a block list is a permutation of all
  // of them; a [batch, row] cache has two batches (1 -> 0 is moved).
  uint64_t rows() const { return unit == Unit::kBlocks ? blocks_per_call : 2; }
  // Configs with the same shape share caches.
  auto shape_key() const { return std::make_tuple(unit, tensors, block_bytes, blocks_per_call, contiguous); }
};

struct SweepSpec {
  std::vector<std::string> transports;
  std::vector<std::string> memories{kMemoryAllocated, kMemoryRegistered};
  std::vector<Op> ops{Op::kPull, Op::kPush};
  std::vector<Unit> units{Unit::kBlocks, Unit::kCache};
  std::vector<uint64_t> block_sizes{4096, 65536, 1 << 20, 4 << 20};
  std::vector<uint64_t> blocks_per_call{1, 16, 256, 4096};
  std::vector<uint32_t> threads{1};
  uint32_t tensors = 1;
  bool contiguous = false;
  uint64_t max_call_bytes = 256ULL << 20;  // bounds memory: both sides hold one call's bytes per thread
};

// The cross product (cache unit: one row of block size x blocks per call,
// deduplicated), without calls above max_call_bytes, ordered so that
// configs sharing a transport, memory kind and shape run back to back
// (pulls before pushes).
std::vector<Config> BuildSweep(const SweepSpec& spec);
// The short, fixed sweep of --quick, for each transport and client thread count.
std::vector<Config> QuickSweep(const std::vector<std::string>& transports, const std::vector<uint32_t>& threads);
// A few tiny configs that check the paths end to end, for ctest.
std::vector<Config> SmokeSweep(const std::vector<std::string>& transports);
// Restores the run order BuildSweep promises for any list of configs.
void OrderForRun(const std::vector<std::string>& transports, std::vector<Config>* configs);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_BENCH_CONFIG_H_
