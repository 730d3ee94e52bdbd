// What prefill writes into a request's KV blocks, so decode can check them.
//
// The seed names the block by request, layer, K/V and the block's position
// in the request (not its pool number, which differs on the two sides):
// a block delivered to the wrong request, layer, tensor or position fails.
#ifndef LLM_DATADIST_TOOLS_DEMO_KV_PATTERN_H_
#define LLM_DATADIST_TOOLS_DEMO_KV_PATTERN_H_

#include <cstdint>

#include "common/pattern.h"

namespace lldd_demo {

inline uint64_t KvBlockSeed(uint64_t run_seed, uint32_t request, uint32_t tensor, uint64_t block_in_request) {
  const uint32_t layer = tensor / 2;
  const uint32_t kv = tensor % 2;  // 0: K, 1: V
  return lldd_tools::RegionSeed({run_seed, request, layer, kv, block_in_request});
}

}  // namespace lldd_demo

#endif  // LLM_DATADIST_TOOLS_DEMO_KV_PATTERN_H_
