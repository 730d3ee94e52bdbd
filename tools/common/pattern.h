// Deterministic test data that exposes any misplaced byte.
//
// Each region (a block of one tensor) gets a 64-bit seed mixed from the
// coordinates that name it (request, tensor, block, ...); word k of the
// region holds seed ^ (k * golden). A block landing in the wrong place, or a
// shifted offset inside it, therefore never matches. Both fill and check
// run at memory speed, so verifying every byte stays affordable.
#ifndef LLM_DATADIST_TOOLS_COMMON_PATTERN_H_
#define LLM_DATADIST_TOOLS_COMMON_PATTERN_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>

namespace lldd_tools {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline uint64_t SplitMix64(uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The seed of the region named by `coordinates`.
inline uint64_t RegionSeed(std::initializer_list<uint64_t> coordinates) {
  uint64_t h = 0x6C6C6D2D64617461ULL;  // "llm-data"
  for (uint64_t c : coordinates) h = SplitMix64(h ^ c);
  return h;
}

inline void FillPattern(void* dst, size_t bytes, uint64_t seed) {
  auto* p = static_cast<uint8_t*>(dst);
  const size_t words = bytes / 8;
  // The running sum instead of k * golden keeps the loop free of 64-bit
  // multiplies, which lets the compiler vectorise it.
  uint64_t step = 0;
  for (size_t k = 0; k < words; ++k, step += kGolden) {
    uint64_t w = seed ^ step;
    std::memcpy(p + k * 8, &w, 8);
  }
  if (bytes % 8 != 0) {
    uint64_t w = seed ^ step;
    std::memcpy(p + words * 8, &w, bytes % 8);
  }
}

// Returns bytes when the region matches, else the offset of the first
// differing 8-byte word (or tail byte).
inline size_t FindPatternMismatch(const void* src, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(src);
  const size_t words = bytes / 8;
  // Chunks keep the common, clean case branch-free inside each chunk.
  constexpr size_t kChunk = 512;
  uint64_t step = 0;
  for (size_t base = 0; base < words; base += kChunk) {
    const size_t end = base + kChunk < words ? base + kChunk : words;
    uint64_t diff = 0;
    uint64_t s = step;
    for (size_t k = base; k < end; ++k, s += kGolden) {
      uint64_t w;
      std::memcpy(&w, p + k * 8, 8);
      diff |= w ^ (seed ^ s);
    }
    if (diff != 0) {
      s = step;
      for (size_t k = base; k < end; ++k, s += kGolden) {
        uint64_t w;
        std::memcpy(&w, p + k * 8, 8);
        if (w != (seed ^ s)) return k * 8;
      }
    }
    step = s;
  }
  if (bytes % 8 != 0) {
    uint64_t w = seed ^ step;
    if (std::memcmp(p + words * 8, &w, bytes % 8) != 0) return words * 8;
  }
  return bytes;
}

inline bool MatchesPattern(const void* src, size_t bytes, uint64_t seed) {
  return FindPatternMismatch(src, bytes, seed) == bytes;
}

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_PATTERN_H_
