#include "common/child_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

namespace lldd_tools {
namespace {

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::unique_ptr<ChildProcess> ChildProcess::Fork(const std::function<int(LineChannel&)>& body) {
  int down[2];
  int up[2];
  if (::pipe(down) != 0) return nullptr;
  if (::pipe(up) != 0) {
    ::close(down[0]);
    ::close(down[1]);
    return nullptr;
  }
  // Buffered output would otherwise be written twice, once by each process.
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {down[0], down[1], up[0], up[1]}) ::close(fd);
    return nullptr;
  }
  if (pid == 0) {
    ::close(down[1]);
    ::close(up[0]);
    int code;
    {
      LineChannel channel(down[0], up[1]);
      code = body(channel);
    }
    std::fflush(nullptr);
    // _exit: the parent's atexit handlers and static destructors are not ours to run.
    ::_exit(code);
  }
  ::close(down[0]);
  ::close(up[1]);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, std::make_unique<LineChannel>(up[0], down[1])));
}

ChildProcess::~ChildProcess() { Kill(); }

int ChildProcess::Wait() {
  if (pid_ <= 0) return exit_code_;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  exit_code_ = DecodeStatus(status);
  return exit_code_;
}

int ChildProcess::WaitOrKill(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (pid_ > 0) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      exit_code_ = DecodeStatus(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      Kill();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return exit_code_;
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  Wait();
}

}  // namespace lldd_tools
