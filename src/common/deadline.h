// A point in time after which an operation gives up.
#ifndef LLM_DATADIST_SRC_COMMON_DEADLINE_H_
#define LLM_DATADIST_SRC_COMMON_DEADLINE_H_

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace lldd {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  static Deadline AfterMillis(int64_t ms) { return Deadline(Clock::now() + std::chrono::milliseconds(ms)); }
  static Deadline At(Clock::time_point when) { return Deadline(when); }
  static Deadline Never() { return Deadline(Clock::time_point::max()); }

  bool Expired() const { return Clock::now() >= when_; }
  // For many deadlines judged at one moment (one clock read for all).
  bool ExpiredAt(Clock::time_point now) const { return now >= when_; }
  // Milliseconds left, rounded up, clamped to [0, INT32_MAX]; for poll().
  int RemainingMillisForPoll() const {
    if (when_ == Clock::time_point::max()) return -1;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(when_ - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(left, 0, INT32_MAX));
  }
  int64_t RemainingMillis() const {
    if (when_ == Clock::time_point::max()) return INT64_MAX;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(when_ - Clock::now()).count();
    return std::max<int64_t>(left, 0);
  }
  Deadline Earlier(const Deadline& other) const { return Deadline(std::min(when_, other.when_)); }
  Clock::time_point when() const { return when_; }

 private:
  explicit Deadline(Clock::time_point when) : when_(when) {}
  Clock::time_point when_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_DEADLINE_H_
