// Measures the library itself for one config: a verified first call, then
// every client thread calling back to back for the time budget, then one
// verified last call per thread. Verified: every block, every byte.
#ifndef LLM_DATADIST_TOOLS_BENCH_LIBRARY_RUNNER_H_
#define LLM_DATADIST_TOOLS_BENCH_LIBRARY_RUNNER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bench/bench_config.h"
#include "bench/block_lists.h"
#include "bench/peer_client.h"
#include "bench/timed_loop.h"
#include "llm_datadist/llm_datadist.h"

namespace lldd_bench {

struct Measurement {
  uint64_t calls = 0;
  double seconds = 0;
  double gbps = 0;
  double ops_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
  // Calls whose every block was checked (the first, and the last of each
  // thread), and the blocks (x tensors) they moved.
  uint64_t verified_calls = 0;
  uint64_t verified_blocks = 0;
};

class LibraryRunner {
 public:
  LibraryRunner(llm_datadist::LlmDataDist& dd, PeerClient& peer, const LoopLimits& limits, uint64_t seed)
      : dd_(dd), peer_(peer), limits_(limits), seed_(seed) {}
  ~LibraryRunner();

  // Consecutive configs of one memory kind and shape share their caches
  // (the serving side's and this side's), which saves filling them again.
  bool Run(const Config& config, Measurement* out, std::string* error);
  // The lists thread 0 uses for `config` (the memcpy baseline copies them).
  BlockLists ListsFor(const Config& config, uint32_t thread) const;
  void ReleaseCaches();

 private:
  struct LocalCache {
    llm_datadist::Cache cache;
  };
  bool Prepare(const Config& config, std::string* error);
  bool VerifiedCall(const Config& config, uint32_t thread, std::string* error);
  llm_datadist::Status Call(const Config& config, const llm_datadist::Cache& local, const BlockLists& lists);
  uint8_t* LocalRow(const LocalCache& c, uint32_t tensor, uint64_t row) const;

  llm_datadist::LlmDataDist& dd_;
  PeerClient& peer_;
  const LoopLimits limits_;
  const uint64_t seed_;
  std::optional<std::tuple<std::string, Unit, uint32_t, uint64_t, uint64_t, bool>> shape_;
  Config shape_config_;
  int64_t remote_cache_ = -1;
  bool remote_pushed_ = false;  // a push wrote the serving side's cache
  std::vector<LocalCache> local_;
};

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_LIBRARY_RUNNER_H_
