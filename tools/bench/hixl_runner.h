// The HIXL rows of the benchmark (--hixl): one-sided reads and writes by
// address through hixl::Hixl, synchronous (TransferSync, one request at a
// time) or asynchronous with a window of requests in flight
// (TransferAsync + GetTransferStatus), against the serving peer's HIXL
// engine. Each row is judged against the same same-run limits as the
// library rows: raw TCP sockets moving a request's bytes (tcp) or
// cross-memory attach of the same ranges (shm: HIXL memory is the user's).
#ifndef LLM_DATADIST_TOOLS_BENCH_HIXL_RUNNER_H_
#define LLM_DATADIST_TOOLS_BENCH_HIXL_RUNNER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/library_runner.h"
#include "bench/memcpy_baseline.h"
#include "bench/peer_client.h"
#include "bench/socket_baseline.h"
#include "bench/timed_loop.h"

namespace lldd_bench {

struct HixlConfig {
  std::string transport;
  bool write = false;          // WRITE (local -> remote) or READ
  uint64_t op_bytes = 0;       // one TransferOpDesc
  uint64_t ops = 1;            // TransferOpDescs per request
  uint32_t in_flight = 0;      // 0: TransferSync; else TransferAsync with this window
  // Each request in flight moves its own bytes (its own copy of the
  // ranges, up to 64 MiB a side, as a serving system's requests each move
  // their own KV blocks), and the socket limit cycles through as much
  // memory; else every request names the same one buffer.
  bool distinct = false;
  // Both sides' memory comes from adxl::AdxlEngine::MallocMem (shareable:
  // a peer on this host maps it) rather than from mmap.
  bool mallocmem = false;
  // The row and its limits are measured this many times, alternating; the
  // round whose ratio to its own target limit is the median is reported.
  uint32_t rounds = 1;

  uint64_t bytes_per_request() const { return op_bytes * ops; }
  // The equivalent library config: its block lists and memory limits.
  Config AsConfig() const;
};

struct HixlRow {
  HixlConfig config;
  std::string link;          // the data path the engine's link used
  int link_connections = 0;  // TCP data connections to the peer (tcp rows)
  Measurement hixl;          // calls = requests; ops_per_s counts TransferOpDescs
  BaselineResult socket_one, socket_link, socket_all;
  MemoryLimits memory;
  double wall_seconds = 0;
  // Every round's library / target limit (or GB/s where no limit was
  // measured), in measuring order; the reported round is their median.
  std::vector<double> round_scores;

  bool socket_bound() const { return link != "shm"; }
  // Over shm, MallocMem memory is mapped by the peer, not reached through
  // the kernel.
  bool mapped() const { return !socket_bound() && config.mallocmem; }
  // The limit a row is judged against: the link's connections (tcp), or
  // all-core memcpy (shm, mapped) or cross-memory attach (shm).
  const BaselineResult& target_limit() const;
};

// The sweep of the issue: READ and WRITE, 4 KiB / 64 KiB / 1 MiB ops,
// batches of 1 and 256, sync and 1 / 8 / 64 in flight, per transport;
// quick: the rows the targets judge, and a few beside them; smoke: two
// tiny rows per transport, for ctest. `windows`, if not empty, keeps only
// those (0: TransferSync).
std::vector<HixlConfig> HixlSweep(const std::vector<std::string>& transports, bool quick, bool smoke,
                                  const std::vector<uint32_t>& windows = {});

// Runs every config of one transport (consecutive in the sweep) against
// the peer: starts the peer's engine per memory shape, measures, verifies
// the first and last request byte for byte, then the row's limits.
class HixlRunner {
 public:
  HixlRunner(PeerClient& peer, SocketBaselineClient& socket, const std::string& host, const LoopLimits& limits,
             unsigned all_cores, uint64_t seed);
  ~HixlRunner();
  bool Run(const HixlConfig& config, HixlRow* row, std::string* error);
  // Ends this side's engine (before the peer's goes).
  void Close();

  struct Session;

 private:
  bool Measure(const HixlConfig& config, HixlRow* row, std::string* error);
  bool MeasureLimits(const HixlConfig& config, HixlRow* row, std::string* error);

  PeerClient& peer_;
  SocketBaselineClient& socket_;
  const std::string host_;
  const LoopLimits limits_;
  const unsigned all_cores_;
  const uint64_t seed_;
  std::unique_ptr<Session> session_;  // kept while consecutive rows share a shape
};

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_HIXL_RUNNER_H_
