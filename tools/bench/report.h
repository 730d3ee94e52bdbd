// Benchmark rows, as a table for people or JSON lines for scripts.
#ifndef LLM_DATADIST_TOOLS_BENCH_REPORT_H_
#define LLM_DATADIST_TOOLS_BENCH_REPORT_H_

#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_config.h"
#include "bench/hixl_runner.h"
#include "bench/library_runner.h"
#include "bench/machine.h"
#include "bench/memcpy_baseline.h"
#include "bench/socket_baseline.h"

namespace lldd_bench {

// Which same-run limits judge a row: the data path the link used decides.
enum class LimitKind {
  kSocket,  // tcp (and anything not same-host): raw sockets
  kMemcpy,  // shm, library-allocated caches: memcpy
  kCma,     // shm, registered user memory: process_vm_readv
};
LimitKind LimitKindFor(const std::string& link, const std::string& memory);

struct Row {
  Config config;
  std::string link;  // the data path the link actually uses
  int link_connections = 0;  // TCP data connections the link held after the row (0: unknown)
  Measurement library;
  MemoryLimits memory;
  BaselineResult socket_one;   // 1 connection
  BaselineResult socket_link;  // as many connections as the link's
  BaselineResult socket_all;   // one connection per core
  double wall_seconds = 0;     // the row and its limits, set-up and checks included

  LimitKind kind() const { return LimitKindFor(link, config.memory); }
  // The three limits of the row's kind: one thread/connection, the
  // library's own parallelism (sockets only; ways 0 elsewhere), all cores.
  const BaselineResult& one() const;
  const BaselineResult& same() const;
  const BaselineResult& all() const;
  // The limit the targets judge the row against: tcp, the socket
  // with the link's connections; shm, the all-core figure.
  const BaselineResult& target_limit() const;
};

void PrintMachineHeader(std::FILE* out, const Machine& m);
void PrintTableHeader(std::FILE* out);
void PrintTableRow(std::FILE* out, const Row& row);
// One JSON object each, no newline.
std::string JsonMachine(const Machine& m, const std::string& serving_side, bool contiguous);
std::string JsonRow(const Row& row);

// The HIXL rows (--hixl), with their own columns: requests, not calls.
void PrintHixlTableHeader(std::FILE* out);
void PrintHixlTableRow(std::FILE* out, const HixlRow& row);
std::string JsonHixlRow(const HixlRow& row);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_REPORT_H_
