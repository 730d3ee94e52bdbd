// The other end of the HIXL cross-process tests: a Hixl server in its own
// process (the hixl_test_peer program, started with fork and exec, as
// test_peer.h explains), driven by one-line commands over a pipe. It does
// what the vendor's quickstart server does: registers memory and publishes
// its address; the test process is the client.
#ifndef LLM_DATADIST_TESTS_HIXL_PEER_H_
#define LLM_DATADIST_TESTS_HIXL_PEER_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "tests/peer_process.h"

namespace lldd_test {

// The byte at `offset` of a buffer filled with `seed`: a position's value
// differs from its neighbours' and from other seeds', so a shifted,
// misplaced or missing range never matches.
inline uint8_t HixlPatternByte(uint64_t seed, uint64_t offset) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ (offset / 8) * 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 31;
  return static_cast<uint8_t>(x >> (8 * (offset % 8)));
}
void FillHixlPattern(uint8_t* p, uint64_t len, uint64_t seed, uint64_t first_offset = 0);
// The first offset where `p` differs from the pattern, or -1.
int64_t FirstPatternMismatch(const uint8_t* p, uint64_t len, uint64_t seed, uint64_t first_offset = 0);

class HixlPeer {
 public:
  // Starts a Hixl server on 127.0.0.1 and a free port with these options
  // (KEY=VALUE, vendor keys or llm.*).
  explicit HixlPeer(std::map<std::string, std::string> options = {});
  ~HixlPeer();

  const std::string& name() const { return name_; }  // "127.0.0.1:port"
  // Sends a command, returns the child's one-line answer ("error ..." on failure).
  std::string Command(const std::string& line);
  // Registers `len` bytes filled with `seed`; returns the address, 0 on failure.
  uint64_t Register(uint64_t len, uint64_t seed, uint64_t* handle = nullptr);
  // As Register, with memory from adxl::AdxlEngine::MallocMem.
  uint64_t RegisterMallocMem(uint64_t len, uint64_t seed, uint64_t* handle = nullptr);
  // The peer's bytes [addr, addr + len) hold the pattern `seed` starting at
  // `first_offset`: "ok", else a reason.
  std::string Check(uint64_t addr, uint64_t len, uint64_t seed, uint64_t first_offset = 0);
  void Kill();    // SIGKILL, no goodbye
  void Freeze();  // SIGSTOP; returns once stopped
  void Thaw();    // SIGCONT
  int Stop();     // asks it to finalize and exit; returns its exit status

 private:
  uint64_t RegisterWith(const std::string& verb, uint64_t len, uint64_t seed, uint64_t* handle);

  std::string name_;  // before process_: its constructor fills it
  std::unique_ptr<PeerProcess> process_;
};

// The peer program's body: reads commands from `in`, answers on `out`.
int ServeHixlCommands(const std::map<std::string, std::string>& options, int in, int out);

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_HIXL_PEER_H_
