#include "demo/prefill.h"

#include <chrono>
#include <map>
#include <string>

#include "common/prefault.h"
#include "demo/block_pool.h"
#include "demo/kv_pattern.h"
#include "demo/messages.h"

namespace lldd_demo {
namespace {

using namespace llm_datadist;
using Clock = std::chrono::steady_clock;

// Stands in for the model's forward pass: writes the request's KV cache.
void FillRequest(const PrefillConfig& config, const Cache& pool, const Request& r, const std::vector<uint64_t>& blocks) {
  const uint64_t bb = config.model->block_bytes();
  for (uint32_t t = 0; t < config.model->tensors(); ++t) {
    auto* base = reinterpret_cast<uint8_t*>(pool.tensor_addrs[t]);
    for (uint64_t j = 0; j < blocks.size(); ++j)
      lldd_tools::FillPattern(base + blocks[j] * bb, bb, KvBlockSeed(config.seed, r.id, t, j));
  }
}

}  // namespace

int RunPrefill(const PrefillConfig& config, lldd_tools::LineChannel& decode) {
  std::string error;
  auto dd = lldd_tools::StartInstance(kPrefillClusterId, LlmRole::kPrompt, config.instance, &error);
  if (!dd) {
    decode.WriteLine("error prefill: " + error);
    return 2;
  }
  Cache pool;
  Status st = dd->AllocateCache(config.model->PoolDesc(config.pool_blocks), pool);
  if (st != LLM_SUCCESS) {
    decode.WriteLine("error prefill: AllocateCache of " + std::to_string(config.pool_blocks) +
                     " blocks failed: " + lldd_tools::DescribeFailure(st));
    return 2;
  }
  const double prefault_s =
      config.prefault ? lldd_tools::Prefault(pool.tensor_addrs, config.pool_blocks * config.model->block_bytes()) : 0.0;
  decode.WriteLine("listening " + std::to_string(dd->GetListenPort()) + " " + std::to_string(prefault_s));

  BlockPool free_blocks(config.pool_blocks, 0);
  std::map<uint32_t, std::vector<uint64_t>> in_flight;
  double fill_seconds = 0;
  uint64_t filled_bytes = 0;
  bool quit = false;

  // Decode's answers free blocks; "quit" may come at any time (decode
  // failed, or it is done).
  auto handle = [&](const std::string& line) {
    if (Verb(line) == "done") {
      auto it = in_flight.find(static_cast<uint32_t>(std::stoul(Rest(line))));
      if (it != in_flight.end()) {
        free_blocks.Give(it->second);
        in_flight.erase(it);
      }
    } else {
      quit = true;
    }
  };

  for (const Request& r : config.requests) {
    std::vector<uint64_t> blocks;
    while (!quit && !free_blocks.Take(r.blocks, &blocks)) {
      std::string line;
      if (!decode.ReadLine(&line)) return 3;
      handle(line);
    }
    if (quit) break;
    auto t0 = Clock::now();
    FillRequest(config, pool, r, blocks);
    fill_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    filled_bytes += r.blocks * config.model->block_bytes() * config.model->tensors();
    in_flight[r.id] = blocks;
    if (!decode.WriteLine(FormatReady({r.id, pool.cache_id, blocks}))) return 3;
  }
  while (!quit) {
    std::string line;
    if (!decode.ReadLine(&line)) return 3;
    handle(line);
  }
  decode.WriteLine("bye " + std::to_string(fill_seconds) + " " + std::to_string(filled_bytes));
  dd->Finalize();
  return 0;
}

}  // namespace lldd_demo
