#include "bench/machine.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "common/units.h"

namespace lldd_bench {

Machine DescribeMachine() {
  Machine m;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) m.cores = static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
  else m.cores = std::max(1U, std::thread::hardware_concurrency());
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) m.memory_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) m.l3_bytes = static_cast<uint64_t>(l3);
#endif
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) m.cpu_model = line.substr(line.find_first_not_of(" \t", colon + 1));
    break;
  }
  utsname u;
  if (uname(&u) == 0) {
    m.kernel = u.release;
    m.host = u.nodename;
  }
  return m;
}

std::string MachineLine(const Machine& m) {
  std::string s = std::to_string(m.cores) + " cores";
  if (!m.cpu_model.empty()) s += " (" + m.cpu_model + ")";
  if (m.l3_bytes > 0) s += ", L3 " + lldd_tools::FormatBytes(m.l3_bytes);
  s += ", " + lldd_tools::FormatBytes(m.memory_bytes) + " memory, Linux " + m.kernel;
  return s;
}

unsigned AllCores(const Machine& m) { return std::clamp(m.cores, 1U, 64U); }

}  // namespace lldd_bench
