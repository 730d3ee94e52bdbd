// Cuts a list of byte ranges into a few lists of about equal bytes, cutting
// ranges where needed: how a transfer is spread over connections or threads.
#ifndef LLM_DATADIST_SRC_COMMON_SPLIT_EVENLY_H_
#define LLM_DATADIST_SRC_COMMON_SPLIT_EVENLY_H_

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lldd {

// `Range` has a `length`; `advance(range, n)` moves its start n bytes on
// (every address or offset it holds). Empty trailing parts are dropped.
template <typename Range, typename Advance>
std::vector<std::vector<Range>> SplitEvenly(const std::vector<Range>& ranges, size_t parts, Advance advance) {
  uint64_t total = 0;
  for (const Range& r : ranges) total += r.length;
  std::vector<std::vector<Range>> out(std::max<size_t>(parts, 1));
  const uint64_t per = total / out.size() + (total % out.size() != 0);  // rounded up, without overflow
  size_t part = 0;
  uint64_t filled = 0;
  for (Range r : ranges) {
    while (r.length > 0) {
      const uint64_t take = part + 1 == out.size() ? r.length : std::min<uint64_t>(r.length, per - filled);
      Range piece = r;
      piece.length = take;
      out[part].push_back(piece);
      advance(r, take);
      r.length -= take;
      filled += take;
      if (filled >= per && part + 1 < out.size()) {
        ++part;
        filled = 0;
      }
    }
  }
  while (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_SPLIT_EVENLY_H_
