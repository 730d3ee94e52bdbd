// Latency samples and their percentiles.
//
// Tail latency is what a serving engine feels, so the tools report p50 and
// p99 rather than a mean that hides the tail.
#ifndef LLM_DATADIST_TOOLS_COMMON_STATS_H_
#define LLM_DATADIST_TOOLS_COMMON_STATS_H_

#include <cstddef>
#include <vector>

namespace lldd_tools {

class LatencyStats {
 public:
  void Add(double value) { samples_.push_back(value); }
  void Merge(const LatencyStats& other);
  size_t count() const { return samples_.size(); }
  // Nearest-rank percentile, p in [0, 100]; 0 when there are no samples.
  double Percentile(double p) const;
  double Min() const;
  double Max() const;
  double Mean() const;
  double Sum() const;

 private:
  std::vector<double> samples_;
  mutable std::vector<double> sorted_;
  mutable bool sorted_valid_ = false;
  const std::vector<double>& Sorted() const;
};

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_STATS_H_
