// The benchmarking side's handle on its serving peer (see peer_protocol.h).
#ifndef LLM_DATADIST_TOOLS_BENCH_PEER_CLIENT_H_
#define LLM_DATADIST_TOOLS_BENCH_PEER_CLIENT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/line_channel.h"

namespace lldd_bench {

class PeerClient {
 public:
  explicit PeerClient(lldd_tools::LineChannel& channel) : channel_(channel) {}

  // Reads the greeting; the raw-socket baseline's port.
  bool Hello(uint16_t* socket_port, std::string* error);
  enum class InitResult { kOk, kUnavailable, kError };
  InitResult Init(const std::string& transport, int64_t wait_ms, uint32_t tcp_connections, uint16_t* port,
                  std::string* error);
  bool CreateCache(const std::string& memory, uint32_t tensors, uint64_t rows, uint64_t row_bytes, uint64_t seed,
                   int64_t* cache_id, std::string* error);
  bool Fill(int64_t cache_id, uint64_t seed, const std::vector<uint64_t>& rows, std::string* error);
  // Each pair: {destination row, source row whose pattern it must hold}.
  bool Check(int64_t cache_id, uint64_t seed, const std::vector<std::pair<uint64_t, uint64_t>>& pairs,
             std::string* error);
  bool Free(int64_t cache_id, std::string* error);
  // The peer's HIXL engine name and its region's address. `mallocmem`: the
  // region is memory from adxl::AdxlEngine::MallocMem, else from mmap.
  bool StartHixl(const std::string& transport, uint64_t slots, uint64_t slot_bytes, uint64_t seed, bool mallocmem,
                 std::string* engine, uintptr_t* region, std::string* error);
  void Quit();

 private:
  // The answer after "ok" (maybe empty), or false with the peer's reason.
  bool Ask(const std::string& command, std::string* value, std::string* error);
  lldd_tools::LineChannel& channel_;
};

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_PEER_CLIENT_H_
