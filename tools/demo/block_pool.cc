#include "demo/block_pool.h"

#include <utility>

#include "common/pattern.h"

namespace lldd_demo {

BlockPool::BlockPool(uint64_t num_blocks, uint64_t shuffle_seed) {
  std::vector<uint64_t> blocks(num_blocks);
  for (uint64_t i = 0; i < num_blocks; ++i) blocks[i] = i;
  if (shuffle_seed != 0) {
    // Fisher-Yates with our own generator: the same order on every platform.
    uint64_t state = shuffle_seed;
    for (uint64_t i = num_blocks; i > 1; --i) {
      state = lldd_tools::SplitMix64(state);
      std::swap(blocks[i - 1], blocks[state % i]);
    }
  }
  free_.assign(blocks.begin(), blocks.end());
}

bool BlockPool::Take(uint64_t n, std::vector<uint64_t>* blocks) {
  if (n > free_.size()) return false;
  blocks->assign(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(n));
  free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(n));
  return true;
}

void BlockPool::Give(const std::vector<uint64_t>& blocks) { free_.insert(free_.end(), blocks.begin(), blocks.end()); }

}  // namespace lldd_demo
