#include "common/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lldd_tools {

void LatencyStats::Merge(const LatencyStats& other) {
  samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
  sorted_valid_ = false;
}

const std::vector<double>& LatencyStats::Sorted() const {
  if (!sorted_valid_ || sorted_.size() != samples_.size()) {
    sorted_ = samples_;
    std::sort(sorted_.begin(), sorted_.end());
    sorted_valid_ = true;
  }
  return sorted_;
}

double LatencyStats::Percentile(double p) const {
  const auto& s = Sorted();
  if (s.empty()) return 0.0;
  p = std::clamp(p, 0.0, 100.0);
  // Nearest rank: with few samples p99 is the maximum, never an interpolation
  // below a value that was actually observed.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(s.size())));
  return s[rank == 0 ? 0 : rank - 1];
}

double LatencyStats::Min() const { return samples_.empty() ? 0.0 : Sorted().front(); }
double LatencyStats::Max() const { return samples_.empty() ? 0.0 : Sorted().back(); }
double LatencyStats::Sum() const { return std::accumulate(samples_.begin(), samples_.end(), 0.0); }
double LatencyStats::Mean() const { return samples_.empty() ? 0.0 : Sum() / static_cast<double>(samples_.size()); }

}  // namespace lldd_tools
