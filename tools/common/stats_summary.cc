#include "common/stats_summary.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace lldd_tools {
namespace {

using Stats = llm_datadist::LlmDataDist::Stats;

std::string Bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ULL << 30)) std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(b) / (1ULL << 30));
  else if (b >= (1ULL << 20)) std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(b) / (1ULL << 20));
  else std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

std::string Latency(const Stats::Latency& h) {
  if (h.count == 0) return "";
  auto ms = [](double s) {
    char buf[24];
    if (std::isinf(s)) return std::string(">10 s");
    std::snprintf(buf, sizeof(buf), "%g ms", s * 1e3);
    return std::string(buf);
  };
  char buf[160];
  std::snprintf(buf, sizeof(buf), ", mean %.3f ms, p50 <= %s, p99 <= %s", h.sum_seconds * 1e3 / static_cast<double>(h.count),
                ms(LatencyQuantile(h, 0.5)).c_str(), ms(LatencyQuantile(h, 0.99)).c_str());
  return buf;
}

std::string Direction(const char* name, uint64_t bytes, uint64_t calls, const Stats::Latency& h) {
  return std::string(name) + " " + Bytes(bytes) + " in " + std::to_string(calls) + " calls" + Latency(h);
}

}  // namespace

double LatencyQuantile(const Stats::Latency& h, double q) {
  if (h.count == 0) return 0;
  const double rank = q * static_cast<double>(h.count);
  uint64_t seen = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    seen += h.counts[i];
    if (static_cast<double>(seen) >= rank)
      return i < h.upper_bounds_seconds.size() ? h.upper_bounds_seconds[i] : std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::infinity();
}

std::string StatsSummary(const Stats& s) {
  std::string out = "links: " + std::to_string(s.links) + " held (max " + std::to_string(s.max_links) + "), " +
                    std::to_string(s.links_initiated) + " initiated, " + std::to_string(s.links_accepted) +
                    " accepted, " + std::to_string(s.links_closed) + " closed";
  for (const auto& [reason, n] : s.links_refused) out += ", refused (" + reason + ") " + std::to_string(n);
  out += "\n";
  if (s.connections_accepted > 0)
    out += "admission: " + std::to_string(s.connections_accepted) + " connections, " +
           std::to_string(s.handshakes_completed) + " HELLOs, " + std::to_string(s.handshakes_pending) +
           " pending; dropped: " + std::to_string(s.handshakes_dropped_timeout) + " timeout, " +
           std::to_string(s.handshakes_dropped_full) + " full, " + std::to_string(s.handshakes_dropped_source) +
           " per-source cap, " + std::to_string(s.handshakes_dropped_bad_frame) + " bad frame\n";
  for (const auto& [name, t] : s.transports) {
    out += name + ": " + Direction("pull", t.pull_bytes, t.pull_calls, t.pull_latency) + "; " +
           Direction("push", t.push_bytes, t.push_calls, t.push_latency);
    for (const auto& [status, n] : t.failures)
      out += "; " + std::to_string(n) + " failed with " + llm_datadist::LlmDataDist::GetStatusName(status);
    out += "\n";
  }
  return out;
}

}  // namespace lldd_tools
