#include "bench/report.h"

#include <nlohmann/json.hpp>

#include "common/units.h"

namespace lldd_bench {
namespace {

double Ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

// "1M" rather than "1 MiB": keeps the table narrow.
std::string Short(uint64_t bytes) {
  std::string s = lldd_tools::FormatBytes(bytes);
  size_t sp = s.find(' ');
  if (sp == std::string::npos) return s;
  std::string unit = s.substr(sp + 1);
  return s.substr(0, sp) + (unit == "B" ? "" : unit.substr(0, 1));
}

}  // namespace

void PrintTableHeader(std::FILE* out) {
  std::fprintf(out, "%-4s %-6s %-9s %-4s %-10s %6s %5s %6s %3s | %7s %9s %9s %9s | %7s %5s %7s %5s %6s %5s | %7s %5s %9s\n",
               "op", "unit", "transport", "link", "memory", "block", "n", "call", "thr", "GB/s", "ops/s", "p50_us",
               "p99_us", "memcpy", "x", "mc_all", "x", "cma", "x", "socket", "x", "sock_p50");
}

void PrintTableRow(std::FILE* out, const Row& r) {
  const Config& c = r.config;
  std::fprintf(out,
               "%-4s %-6s %-9s %-4s %-10s %6s %5llu %6s %3u | %7.2f %9.1f %9.1f %9.1f | %7.2f %5.2f %7.2f %5.2f %6.2f %5.2f | "
               "%7.2f %5.2f %9.1f\n",
               OpName(c.op), UnitName(c.unit), c.transport.c_str(), r.link.c_str(), c.memory.c_str(),
               Short(c.block_bytes).c_str(), static_cast<unsigned long long>(c.blocks_per_call),
               Short(c.bytes_per_call()).c_str(), c.threads, r.library.gbps, r.library.ops_per_s, r.library.p50_us,
               r.library.p99_us, r.memcpy.one_thread.gbps, Ratio(r.library.gbps, r.memcpy.one_thread.gbps), r.memcpy.all_cores_gbps,
               Ratio(r.library.gbps, r.memcpy.all_cores_gbps), r.memcpy.cma_gbps, Ratio(r.library.gbps, r.memcpy.cma_gbps),
               r.socket.gbps,
               Ratio(r.library.gbps, r.socket.gbps), r.socket.p50_us);
  std::fflush(out);
}

std::string JsonRow(const Row& r) {
  const Config& c = r.config;
  nlohmann::ordered_json j;
  j["op"] = OpName(c.op);
  j["unit"] = UnitName(c.unit);
  j["transport"] = c.transport;
  j["link"] = r.link;
  j["memory"] = c.memory;
  j["block_bytes"] = c.block_bytes;
  j["blocks_per_call"] = c.blocks_per_call;
  j["tensors"] = c.tensors;
  j["bytes_per_call"] = c.bytes_per_call();
  j["contiguous"] = c.contiguous;
  j["threads"] = c.threads;
  j["calls"] = r.library.calls;
  j["seconds"] = r.library.seconds;
  j["gbps"] = r.library.gbps;
  j["ops_per_s"] = r.library.ops_per_s;
  j["p50_us"] = r.library.p50_us;
  j["p99_us"] = r.library.p99_us;
  j["memcpy_gbps"] = r.memcpy.one_thread.gbps;
  j["memcpy_p50_us"] = r.memcpy.one_thread.p50_us;
  j["memcpy_all_cores_gbps"] = r.memcpy.all_cores_gbps;
  j["memcpy_all_cores_threads"] = r.memcpy.all_cores_threads;
  j["cma_gbps"] = r.memcpy.cma_gbps;
  j["socket_gbps"] = r.socket.gbps;
  j["socket_p50_us"] = r.socket.p50_us;
  j["ratio_memcpy"] = Ratio(r.library.gbps, r.memcpy.one_thread.gbps);
  j["ratio_memcpy_all_cores"] = Ratio(r.library.gbps, r.memcpy.all_cores_gbps);
  j["ratio_cma"] = Ratio(r.library.gbps, r.memcpy.cma_gbps);
  j["ratio_socket"] = Ratio(r.library.gbps, r.socket.gbps);
  return j.dump();
}

}  // namespace lldd_bench
