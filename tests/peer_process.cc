#include "tests/peer_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "tests/wait_until.h"

namespace lldd_test {

bool ReadLine(int fd, std::string* line, int64_t limit_ms) {
  line->clear();
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(limit_ms, 0));
  for (;;) {
    if (limit_ms >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      pollfd p{fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
    }
    char c;
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (c == '\n') return true;
    line->push_back(c);
  }
}

bool WriteLine(int fd, const std::string& text) {
  const std::string line = text + "\n";
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

uint16_t FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

PeerProcess::PeerProcess(const std::string& program, const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& options, const std::string& ready_prefix,
                         std::string* ready) {
  int down[2];
  int up[2];
  if (pipe2(down, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  if (pipe2(up, O_CLOEXEC) != 0) {
    close(down[0]);
    close(down[1]);
    throw std::runtime_error("pipe failed");
  }
  // Everything the child needs is built before fork: between fork and exec
  // it may only make async-signal-safe calls.
  std::vector<std::string> all{program};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back(std::to_string(down[0]));
  all.push_back(std::to_string(up[1]));
  for (const auto& [k, v] : options) all.push_back(k + "=" + v);
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // Only the child's two ends survive exec.
    if (fcntl(down[0], F_SETFD, 0) == 0 && fcntl(up[1], F_SETFD, 0) == 0) execv(argv[0], argv.data());
    _exit(127);
  }
  close(down[0]);
  close(up[1]);
  to_child_ = down[1];
  from_child_ = up[0];
  std::string line;
  const int64_t limit_ms = std::chrono::milliseconds(kTestWaitLimit).count();
  if (!ReadLine(from_child_, &line, limit_ms) || line.rfind(ready_prefix, 0) != 0) {
    Kill();
    close(to_child_);
    close(from_child_);
    throw std::runtime_error(program + " failed to start: " + line);
  }
  *ready = line.substr(ready_prefix.size());
}

PeerProcess::~PeerProcess() {
  if (pid_ > 0) Kill();
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
}

std::string PeerProcess::Command(const std::string& line) {
  // Writing to a child that is gone would raise SIGPIPE in the test.
  if (pid_ <= 0 || !WriteLine(to_child_, line)) return "error child gone";
  std::string answer;
  if (!ReadLine(from_child_, &answer, std::chrono::milliseconds(kTestWaitLimit).count())) {
    Kill();
    return "error child gone or silent for " + std::to_string(kTestWaitLimit.count()) + " s after '" + line + "'";
  }
  return answer;
}

void PeerProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void PeerProcess::Freeze() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGSTOP);
  int status = 0;
  waitpid(pid_, &status, WUNTRACED);
}

void PeerProcess::Thaw() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);
  int status = 0;
  waitpid(pid_, &status, WCONTINUED);
}

int PeerProcess::Stop() {
  if (pid_ <= 0) return -1;
  WriteLine(to_child_, "quit");
  int status = 0;
  pid_t done = 0;
  // A child stuck in Finalize is killed; the caller sees -1, not a hang.
  if (!WaitUntil([&] { return (done = waitpid(pid_, &status, WNOHANG)) != 0; })) {
    std::fprintf(stderr, "peer process %d did not exit within %lld s of 'quit'; killing it\n", static_cast<int>(pid_),
                 static_cast<long long>(kTestWaitLimit.count()));
    Kill();
    return -1;
  }
  pid_ = -1;
  return done > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace lldd_test
