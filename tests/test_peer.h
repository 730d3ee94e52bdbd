// Runs the other end of a cross-process test in a child process.
//
// The child is a real llm_datadist instance in its own process: the
// llm_datadist_test_peer program, started with fork and exec. (A forked copy
// of the test that went on running without exec would inherit locks that
// the test's own threads held at the fork, a sanitizer's allocator lock
// among them, and could hang on its first allocation.) The parent
// drives it with one-line commands over a pipe (the commands stand for what
// a prefill engine would do on its own: register caches, fill them, read
// them back for checking); it never takes part in a transfer.
#ifndef LLM_DATADIST_TESTS_TEST_PEER_H_
#define LLM_DATADIST_TESTS_TEST_PEER_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llm_datadist/llm_datadist.h"
#include "tests/peer_process.h"
#include "tools/common/pattern.h"

namespace lldd_test {

// Test caches hold the tools' collision-free pattern (tools/common/pattern.h),
// one region per row of a tensor: the row's seed mixes (cache seed, tensor,
// row), so a row landing in the wrong place, or shifted inside, never
// matches. (A formula such as seed*1e6 + tensor*1e4 + row*100 + col repeats
// itself once a row has 100 columns or a tensor 100 rows.)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Pattern() reads the 64-bit pattern words as int32 halves");
inline uint64_t RowSeed(int64_t seed, uint32_t tensor, uint64_t row) {
  return lldd_tools::RegionSeed({static_cast<uint64_t>(seed), tensor, row});
}

// Column `col` (an int32) of the row whose seed is `row_seed`: the low or
// high half of pattern word col / 2, as lldd_tools::FillPattern lays it out.
inline int32_t PatternAt(uint64_t row_seed, uint64_t col) {
  const uint64_t word = row_seed ^ ((col / 2) * lldd_tools::kGolden);
  return static_cast<int32_t>(static_cast<uint32_t>(word >> (32 * (col % 2))));
}

// The int32 at (cache seed, tensor, row, column) of a cache that
// FillPattern(seed) filled.
inline int32_t Pattern(int64_t seed, uint32_t tensor, uint64_t row, uint64_t col) {
  return PatternAt(RowSeed(seed, tensor, row), col);
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
// Pseudo-option for ForkedServer: the child runs on a fake GPU
// (gpu/fake_gpu_api.h) copying at this many bytes per second (0: at once),
// and the command "allocdev N ROWS COLS SEED" allocates a kDevice cache.
constexpr const char kFakeGpuOption[] = "test.fake_gpu";

// The peer program's body: one server instance (cluster `cluster_id`, extra
// Initialize options) obeying one-line commands read from `in`, answering
// on `out`, until "quit" or the end of `in`.
[[noreturn]] void ServeCommands(uint64_t cluster_id, const std::map<std::string, std::string>& options, int in,
                                int out);

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
  void Thaw();    // SIGCONT; returns once the child runs again
  int Stop();   // asks the child to finalize and exit; returns its status

 private:
  std::unique_ptr<PeerProcess> process_;
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
// The `cols` int32 at `row` hold row `src_row` of tensor `src_tensor` of
// FillPattern(seed) (RowHoldsAt), or zeros (RowIsZeroAt); out of
// ThreadSanitizer's view too, for memory the peer pushed into.
bool RowHoldsAt(const int32_t* row, uint64_t cols, int64_t seed, uint32_t src_tensor, uint64_t src_row);
bool RowIsZeroAt(const int32_t* row, uint64_t cols);

// Fills every tensor of a [rows, cols] int32 cache with Pattern(seed, ...).
void FillPattern(const std::vector<uintptr_t>& addrs, uint64_t rows, uint64_t cols, int64_t seed);
llm_datadist::CacheDesc Int32Desc(uint32_t num_tensors, uint64_t rows, uint64_t cols,
                                  llm_datadist::CachePlacement placement = llm_datadist::CachePlacement::kHost);
std::map<llm_datadist::AscendString, llm_datadist::AscendString> ClientOptions(
    std::map<std::string, std::string> extra = {});
llm_datadist::ClusterInfo ClusterAt(uint64_t cluster_id, uint16_t port, const char* ip = "127.0.0.1");

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_TEST_PEER_H_
