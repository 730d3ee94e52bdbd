// The machine a benchmark ran on, printed with every report so that a
// figure never travels without the cores and memory it was measured with.
#ifndef LLM_DATADIST_TOOLS_BENCH_MACHINE_H_
#define LLM_DATADIST_TOOLS_BENCH_MACHINE_H_

#include <cstdint>
#include <string>

namespace lldd_bench {

struct Machine {
  unsigned cores = 1;         // online CPUs this process may use
  uint64_t memory_bytes = 0;  // physical memory
  std::string cpu_model;      // /proc/cpuinfo "model name", or empty
  uint64_t l3_bytes = 0;      // last-level cache as glibc reports it (0: unknown)
  std::string kernel;         // uname -r
  std::string host;           // uname -n
};

Machine DescribeMachine();
// "2 cores (AMD EPYC), L3 32 MiB, 23.4 GiB memory, Linux 6.1.0".
std::string MachineLine(const Machine& m);
// The number of threads or connections the all-core limits use.
unsigned AllCores(const Machine& m);

}  // namespace lldd_bench

#endif  // LLM_DATADIST_TOOLS_BENCH_MACHINE_H_
