#include "bench/targets.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

namespace lldd_bench {
namespace {

std::string Fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

bool Is(const Row& r, uint64_t block, uint64_t n) {
  return r.config.unit == Unit::kBlocks && r.config.block_bytes == block && r.config.blocks_per_call == n;
}

std::string PathName(const Row& r) {
  return r.config.transport + "/" + r.config.memory + "/" + OpName(r.config.op);
}

// Every row `select` picks must reach `min` times `limit(row)`.
TargetResult RatioTarget(const std::string& name, const std::vector<Row>& rows, double min,
                         const std::function<bool(const Row&)>& select,
                         const std::function<const BaselineResult&(const Row&)>& limit) {
  TargetResult t{name, "not run", ""};
  bool all = true;
  for (const Row& r : rows) {
    if (!select(r)) continue;
    const BaselineResult& b = limit(r);
    if (b.ways == 0 || b.gbps <= 0) continue;
    const double x = r.library.gbps / b.gbps;
    all = all && x >= min;
    t.detail += (t.detail.empty() ? "" : ", ") + PathName(r) + " " + Fixed(x);
  }
  if (!t.detail.empty()) t.verdict = all ? "PASS" : "FAIL";
  return t;
}

}  // namespace

std::vector<TargetResult> JudgeTargets(const std::vector<Row>& rows, const Machine& machine) {
  constexpr uint64_t kMiB = 1 << 20;
  std::vector<TargetResult> out;
  // The socket-bound targets, judged per transport (tcp, and ucx where it
  // ran): each verdict covers only its own transport's rows.
  std::vector<std::string> socket_transports{"tcp"};
  for (const Row& r : rows)
    if (r.kind() == LimitKind::kSocket && std::find(socket_transports.begin(), socket_transports.end(),
                                                    r.config.transport) == socket_transports.end())
      socket_transports.push_back(r.config.transport);
  for (const std::string& transport : socket_transports) {
    auto big = [transport](const Row& r) {
      return r.kind() == LimitKind::kSocket && r.config.transport == transport && r.config.memory == kMemoryAllocated &&
             r.config.threads == 1 && Is(r, kMiB, 256);
    };
    out.push_back(RatioTarget(transport + " 1Mx256 >= 0.8 x socket, link's conns", rows, 0.8, big,
                              [](const Row& r) -> const BaselineResult& { return r.socket_link; }));
    out.push_back(RatioTarget(transport + " 1Mx256 >= 0.5 x socket, " + std::to_string(AllCores(machine)) +
                                  " conns (all cores)",
                              rows, 0.5, big, [](const Row& r) -> const BaselineResult& { return r.socket_all; }));
  }
  out.push_back(RatioTarget(
      "shm allocated 1Mx256 >= 0.8 x all-core memcpy", rows, 0.8,
      [](const Row& r) { return r.kind() == LimitKind::kMemcpy && r.config.threads == 1 && Is(r, kMiB, 256); },
      [](const Row& r) -> const BaselineResult& { return r.memory.memcpy_all; }));
  out.push_back(RatioTarget(
      "shm registered 1Mx256 >= 0.6 x all-core cma", rows, 0.6,
      [](const Row& r) { return r.kind() == LimitKind::kCma && r.config.threads == 1 && Is(r, kMiB, 256); },
      [](const Row& r) -> const BaselineResult& { return r.memory.cma_all; }));

  // 4 KiB x 256: 8 threads against 1, per path.
  std::map<std::tuple<std::string, std::string, Op, uint32_t>, std::pair<const Row*, const Row*>> paths;
  for (const Row& r : rows) {
    if (!Is(r, 4096, 256) || (r.config.threads != 1 && r.config.threads != 8)) continue;
    auto& p = paths[{r.config.transport, r.config.memory, r.config.op, r.config.tensors}];
    (r.config.threads == 1 ? p.first : p.second) = &r;
  }
  TargetResult scale{"4Kx256: 8 threads >= 4 x 1 thread, every path", "not run", ""};
  TargetResult tail{"4Kx256, 8 threads: p99 <= 3 x p50", "not run", ""};
  bool scale_ok = true;
  bool tail_ok = true;
  for (const auto& [key, p] : paths) {
    if (p.second != nullptr) {
      const double x = p.second->library.p50_us > 0 ? p.second->library.p99_us / p.second->library.p50_us : 0;
      tail_ok = tail_ok && x <= 3.0;
      tail.detail += (tail.detail.empty() ? "" : ", ") + PathName(*p.second) + " " + Fixed(x);
    }
    if (p.first == nullptr || p.second == nullptr || p.first->library.gbps <= 0) continue;
    const double x = p.second->library.gbps / p.first->library.gbps;
    scale_ok = scale_ok && x >= 4.0;
    scale.detail += (scale.detail.empty() ? "" : ", ") + PathName(*p.first) + " " + Fixed(x);
  }
  if (!scale.detail.empty()) scale.verdict = scale_ok ? "PASS" : "FAIL";
  if (!tail.detail.empty()) tail.verdict = tail_ok ? "PASS" : "FAIL";
  out.push_back(scale);
  out.push_back(tail);
  return out;
}

std::vector<TargetResult> JudgeHixlTargets(const std::vector<HixlRow>& hixl, const std::vector<Row>& rows) {
  constexpr uint64_t kMiB = 1 << 20;
  std::vector<TargetResult> out;
  TargetResult sync{"hixl tcp sync READ 1M >= 0.9 x library pull 1Mx1", "not run", ""};
  const Row* pull = nullptr;
  for (const Row& r : rows)
    if (r.config.transport == "tcp" && r.config.op == Op::kPull && r.config.memory == kMemoryRegistered &&
        r.config.threads == 1 && Is(r, kMiB, 1))
      pull = &r;
  for (const HixlRow& h : hixl) {
    const HixlConfig& c = h.config;
    if (pull == nullptr || pull->library.gbps <= 0 || c.transport != "tcp" || c.write || c.in_flight != 0 ||
        c.op_bytes != kMiB || c.ops != 1)
      continue;
    const double x = h.hixl.gbps / pull->library.gbps;
    sync.verdict = x >= 0.9 ? "PASS" : "FAIL";
    sync.detail = Fixed(h.hixl.gbps) + " / " + Fixed(pull->library.gbps) + " GB/s = " + Fixed(x);
  }
  out.push_back(sync);

  TargetResult async{"hixl tcp 1M ops, 64 in flight >= 0.8 x socket, link's conns", "not run", ""};
  bool async_ok = true;
  for (const HixlRow& h : hixl) {
    const HixlConfig& c = h.config;
    if (c.transport != "tcp" || c.in_flight != 64 || c.op_bytes != kMiB || h.socket_link.gbps <= 0) continue;
    const double x = h.hixl.gbps / h.socket_link.gbps;
    async_ok = async_ok && x >= 0.8;
    async.detail += (async.detail.empty() ? "" : ", ") + std::string(c.write ? "WRITE" : "READ") + " x" +
                    std::to_string(c.ops) + " " + Fixed(x);
  }
  if (!async.detail.empty()) async.verdict = async_ok ? "PASS" : "FAIL";
  out.push_back(async);

  for (uint64_t ops : {uint64_t{1}, uint64_t{256}}) {
    TargetResult rate{"hixl shm 4K ops x" + std::to_string(ops) + ", 64 in flight >= 1M ops/s", "not run", ""};
    bool ok = true;
    for (const HixlRow& h : hixl) {
      const HixlConfig& c = h.config;
      if (c.transport != "shm" || c.in_flight != 64 || c.op_bytes != 4096 || c.ops != ops) continue;
      ok = ok && h.hixl.ops_per_s >= 1e6;
      rate.detail += (rate.detail.empty() ? "" : ", ") + std::string(c.write ? "WRITE " : "READ ") +
                     Fixed(h.hixl.ops_per_s / 1e6) + " M";
    }
    if (!rate.detail.empty()) rate.verdict = ok ? "PASS" : "FAIL";
    out.push_back(rate);
  }
  return out;
}

std::string TargetsLine(const std::vector<TargetResult>& targets) {
  std::string s = "targets:";
  int met = 0;
  int not_run = 0;
  for (const auto& t : targets) {
    s += " " + t.name + ": " + t.verdict + (t.detail.empty() ? "" : " (" + t.detail + ")") + ";";
    met += t.verdict == "PASS";
    not_run += t.verdict == "not run";
  }
  s += " " + std::to_string(met) + " of " + std::to_string(targets.size()) + " met";
  if (not_run > 0) s += ", " + std::to_string(not_run) + " not run";
  return s;
}

std::string TargetsJson(const std::vector<TargetResult>& targets) {
  nlohmann::ordered_json j;
  j["record"] = "targets";
  auto& list = j["targets"] = nlohmann::ordered_json::array();
  for (const auto& t : targets) list.push_back({{"name", t.name}, {"verdict", t.verdict}, {"detail", t.detail}});
  return j.dump();
}

}  // namespace lldd_bench
