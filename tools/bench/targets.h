// The targets of issue 10, judged on the rows of one run, so that a run on
// any machine ends with a self-explanatory verdict:
//
// - tcp pull and push of 1 MiB x 256 (1 client thread): >= 0.8 of raw
//   sockets with as many connections as the link, and >= 0.5 of one
//   connection per core (the issue asks this of a 16-core machine);
// - shm, allocated caches, 1 MiB x 256: >= 0.8 of all-core memcpy;
//   registered memory: >= 0.6 of all-core cross-memory attach;
// - 4 KiB x 256 with 8 client threads: >= 4x the 1-thread throughput on
//   every path (transport x memory x op), with p99 <= 3x p50.
//
// A target whose rows were not part of the run is "not run", never passed.
#ifndef LLM_DATADIST_TOOLS_BENCH_TARGETS_H_
#define LLM_DATADIST_TOOLS_BENCH_TARGETS_H_

#include <string>
#include <vector>

#include "bench/machine.h"
#include "bench/report.h"

namespace lldd_bench {

struct TargetResult {
  std::string name;
  std::string verdict;  // "PASS", "FAIL" or "not run"
  std::string detail;   // the ratios it was judged on
};

std::vector<TargetResult> JudgeTargets(const std::vector<Row>& rows, const Machine& machine);
// The HIXL targets of issue 17, judged on the HIXL rows and the library
// rows of the same run:
// - tcp, one 1 MiB READ per TransferSync: >= 0.9 x the library's pull of
//   one 1 MiB block of registered memory;
// - tcp, 1 MiB ops, 64 requests in flight: >= 0.8 x raw sockets with the
//   link's connections;
// - shm, 4 KiB ops, 64 in flight: >= 1 M ops/s (judged per batch size).
std::vector<TargetResult> JudgeHixlTargets(const std::vector<HixlRow>& hixl, const std::vector<Row>& rows);
// "targets: <name>: PASS (...); ...; 2 of 6 met, 1 not run".
std::string TargetsLine(const std::vector<TargetResult>& targets);
std::string TargetsJson(const std::vector<TargetResult>& targets);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_TARGETS_H_
