#include "common/line_channel.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace lldd_tools {

LineChannel::LineChannel(int read_fd, int write_fd) : read_fd_(read_fd), write_fd_(write_fd) {}

LineChannel::~LineChannel() {
  if (read_fd_ >= 0) ::close(read_fd_);
  if (write_fd_ >= 0 && write_fd_ != read_fd_) ::close(write_fd_);
}

LineChannel::ReadResult LineChannel::Read(std::string* line, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      line->assign(buffer_, 0, nl);
      buffer_.erase(0, nl + 1);
      return ReadResult::kLine;
    }
    if (timeout_ms >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{read_fd_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
      if (rc == 0) return ReadResult::kTimeout;
      if (rc < 0 && errno != EINTR) return ReadResult::kClosed;
      if (rc < 0) continue;
    }
    char chunk[4096];
    ssize_t n = ::read(read_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ReadResult::kClosed;
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

bool LineChannel::WriteLine(const std::string& line) {
  std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(write_fd_, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string LineChannel::Ask(const std::string& line, int timeout_ms) {
  std::string answer;
  if (!WriteLine(line) || !ReadLine(&answer, timeout_ms)) return "error peer process did not answer";
  return answer;
}

}  // namespace lldd_tools
