// A one-line progress bar for interactive runs.
//
// Disabled unless stdout is a terminal, so logs and pipes get only the
// final report, never carriage-return noise.
#ifndef LLM_DATADIST_TOOLS_COMMON_PROGRESS_BAR_H_
#define LLM_DATADIST_TOOLS_COMMON_PROGRESS_BAR_H_

#include <cstdint>
#include <mutex>
#include <string>

namespace lldd_tools {

class ProgressBar {
 public:
  ProgressBar(uint64_t total, std::string label);
  ~ProgressBar();
  bool enabled() const { return enabled_; }
  // Thread-safe; `note` is shown after the bar.
  void Advance(uint64_t amount, const std::string& note = "");
  // Erases the bar so the next output starts on a clean line.
  void Finish();

 private:
  void DrawLocked();
  std::mutex mu_;
  const uint64_t total_;
  const std::string label_;
  const bool enabled_;
  uint64_t done_ = 0;
  std::string note_;
  bool finished_ = false;
};

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_PROGRESS_BAR_H_
