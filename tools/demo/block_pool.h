// A serving engine's free list of KV blocks.
//
// Prefill and decode number their blocks independently: a request's blocks
// on one side have nothing to do with its blocks on the other, and after a
// while both free lists are scattered. The demo shuffles decode's list from
// the start so that every transfer exercises arbitrary block mapping.
#ifndef LLM_DATADIST_TOOLS_DEMO_BLOCK_POOL_H_
#define LLM_DATADIST_TOOLS_DEMO_BLOCK_POOL_H_

#include <cstdint>
#include <deque>
#include <vector>

namespace lldd_demo {

class BlockPool {
 public:
  // shuffle_seed 0 keeps the blocks in order.
  BlockPool(uint64_t num_blocks, uint64_t shuffle_seed);
  uint64_t free_blocks() const { return free_.size(); }
  // False (and nothing taken) if fewer than n blocks are free.
  bool Take(uint64_t n, std::vector<uint64_t>* blocks);
  // Freed blocks go to the back, as in a FIFO allocator, so that reuse
  // mixes the numbering further.
  void Give(const std::vector<uint64_t>& blocks);

 private:
  std::deque<uint64_t> free_;
};

}  // namespace lldd_demo

#endif  // LLM_DATADIST_TOOLS_DEMO_BLOCK_POOL_H_
