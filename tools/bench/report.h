// Benchmark rows, as a table for people or JSON lines for scripts.
#ifndef LLM_DATADIST_TOOLS_BENCH_REPORT_H_
#define LLM_DATADIST_TOOLS_BENCH_REPORT_H_

#include <cstdio>
#include <string>

#include "bench/bench_config.h"
#include "bench/library_runner.h"
#include "bench/memcpy_baseline.h"
#include "bench/socket_baseline.h"

namespace lldd_bench {

struct Row {
  Config config;
  std::string link;  // the data path the link actually uses
  Measurement library;
  MemcpyResult memcpy;
  BaselineResult socket;
};

void PrintTableHeader(std::FILE* out);
void PrintTableRow(std::FILE* out, const Row& row);
// One JSON object, no newline.
std::string JsonRow(const Row& row);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_REPORT_H_
