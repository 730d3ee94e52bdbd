#include "common/progress_bar.h"

#include <unistd.h>

#include <cstdio>

namespace lldd_tools {

ProgressBar::ProgressBar(uint64_t total, std::string label)
    : total_(total), label_(std::move(label)), enabled_(::isatty(STDOUT_FILENO) == 1) {
  if (enabled_) {
    std::lock_guard<std::mutex> lock(mu_);
    DrawLocked();
  }
}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Advance(uint64_t amount, const std::string& note) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  done_ += amount;
  note_ = note;
  DrawLocked();
}

void ProgressBar::DrawLocked() {
  constexpr int kWidth = 30;
  const double frac = total_ == 0 ? 1.0 : static_cast<double>(done_) / static_cast<double>(total_);
  const int filled = static_cast<int>(frac * kWidth + 0.5);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::printf("\r\033[K%s [%s] %llu/%llu %s", label_.c_str(), bar.c_str(), static_cast<unsigned long long>(done_),
              static_cast<unsigned long long>(total_), note_.c_str());
  std::fflush(stdout);
}

void ProgressBar::Finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  std::printf("\r\033[K");
  std::fflush(stdout);
}

}  // namespace lldd_tools
