// The other process of a cross-process test: a program started with fork
// and exec (a forked copy of a threaded test that went on without exec
// could inherit a lock some thread held at the fork), driven by one-line
// commands over a pipe, each answered by one line. ForkedServer
// (test_peer.h) and HixlPeer (hixl_peer.h) are such programs.
//
// Every wait for the child is bounded (kTestWaitLimit): a child that hangs
// fails its test with a message instead of hanging it.
#ifndef LLM_DATADIST_TESTS_PEER_PROCESS_H_
#define LLM_DATADIST_TESTS_PEER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lldd_test {

class PeerProcess {
 public:
  // Runs `program ARGS... IN_FD OUT_FD KEY=VALUE...` and waits for its
  // first line, which must start with `ready_prefix`; returns the rest of
  // it in `*ready`. Throws std::runtime_error if the child does not start.
  PeerProcess(const std::string& program, const std::vector<std::string>& args,
              const std::map<std::string, std::string>& options, const std::string& ready_prefix, std::string* ready);
  ~PeerProcess();
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  // Sends a command, returns the child's answer ("error ..." when it is
  // gone or silent; a silent child is killed, so that a late answer is not
  // taken for the next command's).
  std::string Command(const std::string& line);
  void Kill();    // SIGKILL, no goodbye
  void Freeze();  // SIGSTOP; returns once the child is stopped
  void Thaw();    // SIGCONT; returns once the child runs again
  // Sends "quit" and waits for the child to exit: its exit status, or -1
  // when it had to be killed.
  int Stop();
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
};

// The child's side of the pipe, and the parent's: a line without its '\n';
// `limit_ms` < 0 waits as long as it takes.
bool ReadLine(int fd, std::string* line, int64_t limit_ms = -1);
bool WriteLine(int fd, const std::string& line);

// A loopback port nobody listens on right now (another process may take it
// before the caller binds it: callers that bind later retry on "in use").
uint16_t FreeLoopbackPort();

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_PEER_PROCESS_H_
