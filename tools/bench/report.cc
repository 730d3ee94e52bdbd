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

const char* KindName(LimitKind k) {
  switch (k) {
    case LimitKind::kSocket: return "socket";
    case LimitKind::kMemcpy: return "memcpy";
    case LimitKind::kCma: return "cma";
  }
  return "?";
}

const BaselineResult kNone{};

// "  4  12.34  0.56": ways, GB/s, row / limit; blanks where not measured.
std::string Limit(const BaselineResult& b, double gbps) {
  char buf[64];
  if (b.ways == 0) std::snprintf(buf, sizeof(buf), "%3s %7s %5s", "-", "-", "-");
  else std::snprintf(buf, sizeof(buf), "%3u %7.2f %5.2f", b.ways, b.gbps, Ratio(gbps, b.gbps));
  return buf;
}

nlohmann::ordered_json JsonLimit(const BaselineResult& b, double gbps) {
  if (b.ways == 0) return nullptr;
  nlohmann::ordered_json j;
  j["ways"] = b.ways;
  j["gbps"] = b.gbps;
  j["ratio"] = Ratio(gbps, b.gbps);
  if (b.p50_us > 0) {
    j["p50_us"] = b.p50_us;
    j["p99_us"] = b.p99_us;
  }
  return j;
}

}  // namespace

LimitKind LimitKindFor(const std::string& link, const std::string& memory) {
  if (link != "shm") return LimitKind::kSocket;
  return memory == kMemoryRegistered ? LimitKind::kCma : LimitKind::kMemcpy;
}

const BaselineResult& Row::one() const {
  switch (kind()) {
    case LimitKind::kSocket: return socket_one;
    case LimitKind::kMemcpy: return memory.memcpy_one;
    case LimitKind::kCma: return memory.cma_one;
  }
  return kNone;
}
const BaselineResult& Row::same() const { return kind() == LimitKind::kSocket ? socket_link : kNone; }
const BaselineResult& Row::all() const {
  switch (kind()) {
    case LimitKind::kSocket: return socket_all;
    case LimitKind::kMemcpy: return memory.memcpy_all;
    case LimitKind::kCma: return memory.cma_all;
  }
  return kNone;
}
const BaselineResult& Row::target_limit() const { return kind() == LimitKind::kSocket ? same() : all(); }

void PrintMachineHeader(std::FILE* out, const Machine& m) {
  std::fprintf(out, "machine: %s\n", MachineLine(m).c_str());
}

void PrintTableHeader(std::FILE* out) {
  std::fprintf(out, "%-4s %-6s %-9s %-4s %-10s %5s %4s %5s %3s %5s | %7s %8s %9s %9s | %-6s | %3s %7s %5s | %3s %7s %5s | %3s %7s %5s\n",
               "op", "unit", "transport", "link", "memory", "block", "n", "call", "thr", "conns", "GB/s", "ops/s",
               "p50_us", "p99_us", "limit", "n", "one", "x", "n", "same", "x", "n", "all", "x");
}

void PrintTableRow(std::FILE* out, const Row& r) {
  const Config& c = r.config;
  const double g = r.library.gbps;
  std::string conns = r.link_connections > 0 ? std::to_string(r.link_connections) : "-";
  std::fprintf(out, "%-4s %-6s %-9s %-4s %-10s %5s %4llu %5s %3u %5s | %7.2f %8.1f %9.1f %9.1f | %-6s | %s | %s | %s\n",
               OpName(c.op), UnitName(c.unit), c.transport.c_str(), r.link.c_str(), c.memory.c_str(),
               Short(c.block_bytes).c_str(), static_cast<unsigned long long>(c.blocks_per_call),
               Short(c.bytes_per_call()).c_str(), c.threads, conns.c_str(), g, r.library.ops_per_s, r.library.p50_us,
               r.library.p99_us, KindName(r.kind()), Limit(r.one(), g).c_str(), Limit(r.same(), g).c_str(),
               Limit(r.all(), g).c_str());
  std::fflush(out);
}

std::string JsonMachine(const Machine& m, const std::string& serving_side, bool contiguous) {
  nlohmann::ordered_json j;
  j["record"] = "machine";
  j["cores"] = m.cores;
  j["memory_bytes"] = m.memory_bytes;
  j["cpu_model"] = m.cpu_model;
  j["l3_bytes"] = m.l3_bytes;
  j["kernel"] = m.kernel;
  j["host"] = m.host;
  j["all_core_ways"] = AllCores(m);
  j["serving_side"] = serving_side;
  j["block_lists"] = contiguous ? "contiguous" : "random permutations";
  return j.dump();
}

std::string JsonRow(const Row& r) {
  const Config& c = r.config;
  const double g = r.library.gbps;
  nlohmann::ordered_json j;
  j["record"] = "row";
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
  j["link_connections"] = r.link_connections;
  j["calls"] = r.library.calls;
  j["seconds"] = r.library.seconds;
  j["gbps"] = g;
  j["ops_per_s"] = r.library.ops_per_s;
  j["p50_us"] = r.library.p50_us;
  j["p99_us"] = r.library.p99_us;
  j["verified_calls"] = r.library.verified_calls;
  j["verified_blocks"] = r.library.verified_blocks;
  j["limit_kind"] = KindName(r.kind());
  j["target_limit_gbps"] = r.target_limit().gbps;
  j["target_ratio"] = Ratio(g, r.target_limit().gbps);
  j["memcpy_one"] = JsonLimit(r.memory.memcpy_one, g);
  j["memcpy_all_cores"] = JsonLimit(r.memory.memcpy_all, g);
  j["cma_one"] = JsonLimit(r.memory.cma_one, g);
  j["cma_all_cores"] = JsonLimit(r.memory.cma_all, g);
  j["socket_one"] = JsonLimit(r.socket_one, g);
  j["socket_link_connections"] = JsonLimit(r.socket_link, g);
  j["socket_all_cores"] = JsonLimit(r.socket_all, g);
  j["wall_s"] = r.wall_seconds;
  return j.dump();
}

namespace {
const char* HixlLimitKind(const HixlRow& r) { return r.socket_bound() ? "socket" : r.mapped() ? "memcpy" : "cma"; }
}  // namespace

void PrintHixlTableHeader(std::FILE* out) {
  std::fprintf(out, "%-5s %-9s %-4s %5s %4s %5s %6s %5s | %7s %9s %9s %9s | %-6s | %3s %7s %5s | %3s %7s %5s | %3s %7s %5s\n",
               "hixl", "transport", "link", "op", "ops", "req", "flight", "conns", "GB/s", "ops/s", "p50_us", "p99_us",
               "limit", "n", "one", "x", "n", "same", "x", "n", "all", "x");
}

void PrintHixlTableRow(std::FILE* out, const HixlRow& r) {
  const HixlConfig& c = r.config;
  const double g = r.hixl.gbps;
  const std::string conns = r.link_connections > 0 ? std::to_string(r.link_connections) : "-";
  const std::string flight = c.in_flight == 0 ? "sync" : std::to_string(c.in_flight);
  static const BaselineResult kNotMeasured;
  std::fprintf(out, "%-5s %-9s %-4s %5s %4llu %5s %6s %5s | %7.2f %9.0f %9.1f %9.1f | %-6s | %s | %s | %s\n",
               c.write ? "WRITE" : "READ", c.transport.c_str(), r.link.c_str(), Short(c.op_bytes).c_str(),
               static_cast<unsigned long long>(c.ops), Short(c.bytes_per_request()).c_str(), flight.c_str(),
               conns.c_str(), g, r.hixl.ops_per_s, r.hixl.p50_us, r.hixl.p99_us, HixlLimitKind(r),
               Limit(r.socket_bound() ? r.socket_one : r.mapped() ? r.memory.memcpy_one : r.memory.cma_one, g).c_str(),
               Limit(r.socket_bound() ? r.socket_link : kNotMeasured, g).c_str(),
               Limit(r.socket_bound() ? r.socket_all : r.mapped() ? r.memory.memcpy_all : r.memory.cma_all, g).c_str());
  std::fflush(out);
}

std::string JsonHixlRow(const HixlRow& r) {
  const HixlConfig& c = r.config;
  const double g = r.hixl.gbps;
  nlohmann::ordered_json j;
  j["record"] = "hixl_row";
  j["op"] = c.write ? "WRITE" : "READ";
  j["transport"] = c.transport;
  j["link"] = r.link;
  j["op_bytes"] = c.op_bytes;
  j["ops_per_request"] = c.ops;
  j["bytes_per_request"] = c.bytes_per_request();
  j["in_flight"] = c.in_flight;  // 0: TransferSync
  j["distinct_requests"] = c.distinct;
  j["memory"] = c.mallocmem ? "mallocmem" : "mmap";
  j["rounds"] = r.round_scores.size();
  j["round_scores"] = r.round_scores;  // library / target limit per round; the row is the median's
  j["link_connections"] = r.link_connections;
  j["requests"] = r.hixl.calls;
  j["seconds"] = r.hixl.seconds;
  j["gbps"] = g;
  j["ops_per_s"] = r.hixl.ops_per_s;
  j["p50_us"] = r.hixl.p50_us;
  j["p99_us"] = r.hixl.p99_us;
  j["verified_requests"] = r.hixl.verified_calls;
  j["limit_kind"] = HixlLimitKind(r);
  j["target_limit_gbps"] = r.target_limit().gbps;
  j["target_ratio"] = Ratio(g, r.target_limit().gbps);
  j["memcpy_one"] = JsonLimit(r.memory.memcpy_one, g);
  j["memcpy_all_cores"] = JsonLimit(r.memory.memcpy_all, g);
  j["cma_one"] = JsonLimit(r.memory.cma_one, g);
  j["cma_all_cores"] = JsonLimit(r.memory.cma_all, g);
  j["socket_one"] = JsonLimit(r.socket_one, g);
  j["socket_link_connections"] = JsonLimit(r.socket_link, g);
  j["socket_all_cores"] = JsonLimit(r.socket_all, g);
  j["wall_s"] = r.wall_seconds;
  return j.dump();
}

}  // namespace lldd_bench
