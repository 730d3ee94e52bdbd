// A peer process forked from this one, talking over a pair of pipes.
//
// The tools fork their peer (the prefill server of the demo, the serving
// side of the benchmark) instead of running it in a thread so that the two
// library instances share nothing but the kernel, as in real deployments.
//
// Fork before this process starts any thread (the library starts threads
// in Initialize): a child forked from a threaded parent may inherit locks
// that no thread will ever release.
#ifndef LLM_DATADIST_TOOLS_COMMON_CHILD_PROCESS_H_
#define LLM_DATADIST_TOOLS_COMMON_CHILD_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>

#include "common/line_channel.h"

namespace lldd_tools {

class ChildProcess {
 public:
  // Forks; the child runs body(channel to the parent) and exits with its
  // return value. Returns null (errno set) if the fork fails.
  static std::unique_ptr<ChildProcess> Fork(const std::function<int(LineChannel&)>& body);
  ~ChildProcess();  // kills the child if it is still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  LineChannel& channel() { return *channel_; }
  pid_t pid() const { return pid_; }
  // Waits for the child to exit; its exit code, or 128 + signal number.
  int Wait();
  // Waits at most timeout_ms, then kills it; the exit code as Wait().
  int WaitOrKill(int timeout_ms);
  void Kill();

 private:
  ChildProcess(pid_t pid, std::unique_ptr<LineChannel> channel) : pid_(pid), channel_(std::move(channel)) {}
  pid_t pid_;
  int exit_code_ = -1;
  std::unique_ptr<LineChannel> channel_;
};

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_CHILD_PROCESS_H_
