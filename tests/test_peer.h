// Runs the other end of a cross-process test in a forked child.
//
// The child is a real llm_datadist instance in its own process. The parent
// drives it with one-line commands over a pipe (the commands stand for what
// a prefill engine would do on its own: register caches, fill them, read
// them back for checking); it never takes part in a transfer.
#ifndef LLM_DATADIST_TESTS_TEST_PEER_H_
#define LLM_DATADIST_TESTS_TEST_PEER_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llm_datadist/llm_datadist.h"

namespace lldd_test {

// The value every test cache holds at (cache seed, tensor, row, column),
// so that any misplaced byte is detected.
inline int32_t Pattern(int64_t seed, uint32_t tensor, uint64_t row, uint64_t col) {
  return static_cast<int32_t>(seed * 1000000 + tensor * 10000 + row * 100 + col);
}

// What a process holds, to show that repeated work leaks nothing.
struct ResourceCounts {
  size_t fds = 0;
  size_t threads = 0;
  size_t mappings = 0;    // of library-allocated (memfd) memory, ours or a peer's
  size_t heap_bytes = 0;  // malloc'ed and in use
  static ResourceCounts Now();
  static ResourceCounts Parse(const std::string& text);
  std::string ToString() const;
};

// Pseudo-option for ForkedServer: the child first enters this network
// namespace (a name under /var/run/netns).
constexpr const char kNetnsOption[] = "test.netns";
bool EnterNetns(const std::string& name);

class ForkedServer {
 public:
  // Starts a server instance (cluster `cluster_id`) listening on
  // 127.0.0.1 and an ephemeral port, with extra Initialize options.
  explicit ForkedServer(uint64_t cluster_id, std::map<std::string, std::string> options = {});
  ~ForkedServer();

  uint16_t port() const { return port_; }
  // Sends a command, returns the child's one-line answer.
  std::string Command(const std::string& line);
  // Convenience wrappers over Command().
  int64_t RegisterInt32(uint32_t num_tensors, uint64_t rows, uint64_t cols, int64_t seed);
  int64_t AllocateInt32(uint32_t num_tensors, uint64_t rows, uint64_t cols, int64_t seed);
  std::vector<int32_t> ReadRow(int64_t cache_id, uint32_t tensor, uint64_t row);
  ResourceCounts Stats();
  void Kill();    // SIGKILL, no goodbye
  void Freeze();  // SIGSTOP; returns once the child is stopped
  void Thaw();    // SIGCONT
  int Stop();   // asks the child to finalize and exit; returns its status

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  uint16_t port_ = 0;
};

// Row `row` of tensor `t` of an int32 [rows, cols] cache holds what
// FillPattern(seed) put in row `src_row` of tensor `src_tensor`.
bool RowHolds(const llm_datadist::Cache& cache, uint32_t t, uint64_t row, uint64_t cols, int64_t seed,
              uint32_t src_tensor, uint64_t src_row);

// Plain stores and loads of cache memory that a transfer made by the *peer*
// also touches; kept out of ThreadSanitizer's view, which cannot see the
// ordering through the other process.
void StoreInts(int32_t* p, size_t n, int32_t value);
int32_t LoadInt(const int32_t* p);

// Fills every tensor of a [rows, cols] int32 cache with Pattern(seed, ...).
void FillPattern(const std::vector<uintptr_t>& addrs, uint64_t rows, uint64_t cols, int64_t seed);
llm_datadist::CacheDesc Int32Desc(uint32_t num_tensors, uint64_t rows, uint64_t cols,
                                  llm_datadist::CachePlacement placement = llm_datadist::CachePlacement::kHost);
std::map<llm_datadist::AscendString, llm_datadist::AscendString> ClientOptions(
    std::map<std::string, std::string> extra = {});
llm_datadist::ClusterInfo ClusterAt(uint64_t cluster_id, uint16_t port, const char* ip = "127.0.0.1");

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_TEST_PEER_H_
