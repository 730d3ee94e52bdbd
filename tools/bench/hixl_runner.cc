#include "bench/hixl_runner.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <thread>

#include "bench/block_lists.h"
#include "bench/link_sockets.h"
#include "bench/peer_protocol.h"
#include "bench/row_pattern.h"
#include "bench/user_memory.h"
#include "hixl/hixl.h"

namespace lldd_bench {
namespace {

constexpr int32_t kTimeoutMs = 60000;
// The peer's HIXL region and this side's both hold `copies` requests' ops.
constexpr int64_t kRegionId = kHixlRegionId;
// With HixlConfig::distinct, the memory each side's copies take at most.
constexpr uint64_t kCopyBudget = 64ULL << 20;

// How many distinct copies of a request's ranges a row cycles through.
uint64_t RequestCopies(const HixlConfig& c) {
  if (c.in_flight == 0 || !c.distinct) return 1;
  return std::clamp<uint64_t>(kCopyBudget / c.bytes_per_request(), 1, c.in_flight);
}

}  // namespace

// This side of a row's shape: a client-only engine connected to the
// peer's, and a registered local buffer of `copies` x `ops` slots (copy k
// holds slots k * ops ..., on both sides).
struct HixlRunner::Session {
  std::string transport;
  uint64_t op_bytes = 0;
  uint64_t ops = 0;
  uint64_t copies = 1;
  bool mallocmem = false;
  hixl::Hixl engine;
  std::string remote;
  uintptr_t remote_base = 0;
  uint8_t* local = nullptr;
  size_t local_bytes = 0;
  hixl::MemHandle handle = nullptr;

  ~Session() {
    engine.Finalize();
    if (local) FreeUserBuffer(mallocmem, local, local_bytes);
  }
  uint8_t* LocalSlot(uint64_t slot) const { return local + slot * op_bytes; }
};

namespace {

using Session = HixlRunner::Session;

std::string HixlError(const char* what, hixl::Status st) {
  return std::string(what) + " returned " + std::to_string(st);
}

// Copy `copy` of the request's TransferOpDescs: lists move src rows to dst
// rows in the direction data flows (READ: remote -> local).
std::vector<hixl::TransferOpDesc> Descs(const Session& s, const HixlConfig& c, const BlockLists& lists,
                                        uint64_t copy = 0) {
  std::vector<hixl::TransferOpDesc> descs(lists.src.size());
  const uint64_t base = copy * c.ops;
  for (size_t i = 0; i < descs.size(); ++i) {
    const uint64_t local_slot = base + (c.write ? lists.src[i] : lists.dst[i]);
    const uint64_t remote_slot = base + (c.write ? lists.dst[i] : lists.src[i]);
    descs[i] = {reinterpret_cast<uintptr_t>(s.LocalSlot(local_slot)), s.remote_base + remote_slot * c.op_bytes,
                c.op_bytes};
  }
  return descs;
}

hixl::Status Transfer(Session& s, const HixlConfig& c, const std::vector<hixl::TransferOpDesc>& descs) {
  return s.engine.TransferSync(s.remote.c_str(), c.write ? hixl::WRITE : hixl::READ, descs, kTimeoutMs);
}

}  // namespace

Config HixlConfig::AsConfig() const {
  Config c;
  c.transport = transport;
  c.memory = kMemoryRegistered;
  c.op = write ? Op::kPush : Op::kPull;
  c.unit = Unit::kBlocks;
  c.block_bytes = op_bytes;
  c.blocks_per_call = ops;
  return c;
}

const BaselineResult& HixlRow::target_limit() const {
  return socket_bound() ? socket_link : mapped() ? memory.memcpy_all : memory.cma_all;
}

std::vector<HixlConfig> HixlSweep(const std::vector<std::string>& transports, bool quick, bool smoke,
                                  const std::vector<uint32_t>& windows) {
  auto wanted = [&](uint32_t w) { return windows.empty() || std::find(windows.begin(), windows.end(), w) != windows.end(); };
  constexpr uint64_t kKiB = 1024;
  std::vector<HixlConfig> out;
  for (const std::string& t : transports) {
    if (smoke) {
      if (wanted(0)) out.push_back({t, false, 4 * kKiB, 1, 0});
      if (wanted(8)) out.push_back({t, true, 4 * kKiB, 16, 8});
      continue;
    }
    for (uint64_t op_bytes : {4 * kKiB, 64 * kKiB, 1024 * kKiB}) {
      for (uint64_t ops : {1, 256}) {
        if (quick && op_bytes == 64 * kKiB) continue;
        for (bool write : {false, true}) {
          for (uint32_t window : {0U, 1U, 8U, 64U}) {
            if ((quick && (write || window == 1 || window == 8)) || !wanted(window)) continue;
            out.push_back({t, write, op_bytes, ops, window});
          }
        }
      }
    }
  }
  return out;
}

namespace {

// This side's slots 0 .. slots - 1 hold its own pattern (a WRITE's
// sources, or a READ's destinations before the bytes land).
void FillLocalSlots(const Session& s, const HixlConfig& c, uint64_t slots) {
  for (uint64_t slot = 0; slot < slots; ++slot)
    lldd_tools::FillPattern(s.LocalSlot(slot), c.op_bytes, RowSeed(kClientSeed, 0, slot));
}

// Starts (or reuses) the peer's engine and this side's for `c`'s shape.
bool OpenSession(PeerClient& peer, const std::string& host, const HixlConfig& c, std::unique_ptr<Session>* session,
                 std::string* error) {
  auto& s = *session;
  const uint64_t copies = RequestCopies(c);
  if (s && s->transport == c.transport && s->op_bytes == c.op_bytes && s->ops == c.ops && s->copies == copies &&
      s->mallocmem == c.mallocmem)
    return true;
  s.reset();
  std::string engine;
  uintptr_t base = 0;
  if (!peer.StartHixl(c.transport, copies * c.ops, c.op_bytes, kServerSeed, c.mallocmem, &engine, &base, error))
    return false;
  auto n = std::make_unique<Session>();
  n->transport = c.transport;
  n->op_bytes = c.op_bytes;
  n->ops = c.ops;
  n->copies = copies;
  n->mallocmem = c.mallocmem;
  n->remote = engine;
  n->remote_base = base;
  std::map<hixl::AscendString, hixl::AscendString> options;
  if (c.transport != "-" && !c.transport.empty()) options["llm.TransferBackend"] = c.transport.c_str();
  hixl::Status st = n->engine.Initialize(host.c_str(), options);
  if (st != hixl::SUCCESS) return *error = HixlError("Initialize", st), false;
  n->local_bytes = copies * c.ops * c.op_bytes;
  void* p = nullptr;
  if (std::string why = AllocateUserBuffer(c.mallocmem, n->local_bytes, &p); !why.empty()) return *error = why, false;
  n->local = static_cast<uint8_t*>(p);
  st = n->engine.RegisterMem({reinterpret_cast<uintptr_t>(p), n->local_bytes}, hixl::MEM_HOST, n->handle);
  if (st != hixl::SUCCESS) return *error = HixlError("RegisterMem", st), false;
  st = n->engine.Connect(engine.c_str(), 10000);
  if (st != hixl::SUCCESS) return *error = HixlError("Connect", st), false;
  // WRITE rows send every copy: each holds this side's pattern from the start.
  FillLocalSlots(*n, c, copies * c.ops);
  s = std::move(n);
  return true;
}

// Before a timed loop: every copy's destinations hold what the loop's
// bytes are not, so a request that never landed shows in CheckCopies
// (the first verified request left copy 0's as it wants them). Copies
// 0 .. copies - 1.
bool ResetDestinations(PeerClient& peer, const Session& s, const HixlConfig& c, uint64_t copies,
                       std::string* error) {
  if (c.write) {
    std::vector<uint64_t> rows(copies * c.ops);
    for (uint64_t r = 0; r < rows.size(); ++r) rows[r] = r;
    return peer.Fill(kRegionId, kServerSeed, rows, error);
  }
  FillLocalSlots(s, c, copies * c.ops);
  return true;
}

// After a timed loop of `calls` requests: every byte of each copy's
// destinations, as the copy's last request left them.
bool CheckCopies(PeerClient& peer, const Session& s, const HixlConfig& c, const BlockLists& lists, uint64_t calls,
                 std::string* error) {
  const uint64_t used = std::min(s.copies, calls);
  if (c.write) {
    std::vector<std::pair<uint64_t, uint64_t>> pairs;
    for (uint64_t k = 0; k < used; ++k)
      for (size_t i = 0; i < lists.src.size(); ++i) pairs.emplace_back(k * c.ops + lists.dst[i], k * c.ops + lists.src[i]);
    return peer.Check(kRegionId, kClientSeed, pairs, error);
  }
  for (uint64_t k = 0; k < used; ++k) {
    for (size_t i = 0; i < lists.src.size(); ++i) {
      const uint64_t dst = k * c.ops + lists.dst[i], src = k * c.ops + lists.src[i];
      size_t at = lldd_tools::FindPatternMismatch(s.LocalSlot(dst), c.op_bytes, RowSeed(kServerSeed, 0, src));
      if (at != c.op_bytes)
        return *error = "READ of remote slot " + std::to_string(src) + " differs at byte " + std::to_string(at), false;
    }
  }
  return true;
}

// One request, then every byte of its destinations checked.
bool VerifiedRequest(PeerClient& peer, Session& s, const HixlConfig& c, const BlockLists& lists, std::string* error) {
  FillLocalSlots(s, c, c.ops);
  if (c.write && !ResetDestinations(peer, s, c, 1, error)) return false;
  hixl::Status st = Transfer(s, c, Descs(s, c, lists));
  if (st != hixl::SUCCESS) return *error = HixlError("TransferSync", st), false;
  return CheckCopies(peer, s, c, lists, 1, error);
}

// Keeps `window` requests in flight until the time budget is spent, then
// drains them; a request's latency runs from its submission to the poll
// that saw it complete. Request n moves copy n % copies.
LoopResult RunWindowed(Session& s, const HixlConfig& c, const std::vector<std::vector<hixl::TransferOpDesc>>& copies,
                       const LoopLimits& limits, std::string* error) {
  struct InFlight {
    hixl::TransferReq req;
    Clock::time_point submitted;
  };
  LoopResult r;
  r.start = Clock::now();
  const auto until = r.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limits.min_seconds));
  std::deque<InFlight> q;
  uint64_t submitted = 0;
  const hixl::TransferOp op = c.write ? hixl::WRITE : hixl::READ;
  for (;;) {
    const auto now = Clock::now();
    const bool more = submitted < limits.max_calls && (now < until || submitted < limits.min_calls);
    while (more && q.size() < c.in_flight) {
      hixl::TransferReq req = nullptr;
      // The loop's clock reading, taken before: the submission's own cost
      // counts (one reading per pass: each costs about as much as a
      // tenth of a small request).
      const Clock::time_point submitted_at = now;
      hixl::Status st =
          s.engine.TransferAsync(s.remote.c_str(), op, copies[submitted % copies.size()], hixl::TransferArgs{}, req);
      if (st != hixl::SUCCESS) {
        *error = HixlError("TransferAsync", st);
        r.ok = false;
        break;
      }
      q.push_back({req, submitted_at});
      ++submitted;
    }
    if (q.empty()) break;
    if (!r.ok) break;
    hixl::TransferStatus status = hixl::TransferStatus::WAITING;
    hixl::Status st = s.engine.GetTransferStatus(q.front().req, status);
    if (st == hixl::SUCCESS && status == hixl::TransferStatus::WAITING) {
      std::this_thread::yield();
      continue;
    }
    const Clock::time_point front_submitted = q.front().submitted;
    q.pop_front();  // reported once: its handle is released
    if (st != hixl::SUCCESS || status != hixl::TransferStatus::COMPLETED) {
      *error = st != hixl::SUCCESS ? HixlError("GetTransferStatus", st)
                                   : std::string("a request ended ") +
                                         (status == hixl::TransferStatus::FAILED ? "FAILED" : "TIMEOUT");
      r.ok = false;
      break;
    }
    r.latency_us.Add(std::chrono::duration<double, std::micro>(Clock::now() - front_submitted).count());
    ++r.calls;
  }
  // After a failure the rest are still the engine's: wait them out.
  for (const InFlight& f : q) {
    hixl::TransferStatus status = hixl::TransferStatus::WAITING;
    while (s.engine.GetTransferStatus(f.req, status) == hixl::SUCCESS && status == hixl::TransferStatus::WAITING)
      std::this_thread::yield();
  }
  r.end = Clock::now();
  return r;
}

}  // namespace

bool HixlRunner::Measure(const HixlConfig& c, HixlRow* row, std::string* error) {
  if (!OpenSession(peer_, host_, c, &session_, error)) return false;
  Session& s = *session_;
  const BlockLists lists = MakeBlockLists(c.AsConfig(), seed_);
  if (!VerifiedRequest(peer_, s, c, lists, error)) return *error = "first request: " + *error, false;
  std::vector<std::vector<hixl::TransferOpDesc>> copies(s.copies);
  for (uint64_t k = 0; k < s.copies; ++k) copies[k] = Descs(s, c, lists, k);
  // Each copy once, untimed and checked: the timed loop measures memory a
  // serving system has used before, not its first touch (on this VM the
  // first pass over 64 fresh MiB took half a second), as the socket limit
  // warms its copies.
  if (s.copies > 1) {
    if (!ResetDestinations(peer_, s, c, s.copies, error)) return false;
    for (const auto& descs : copies) {
      hixl::Status st = Transfer(s, c, descs);
      if (st != hixl::SUCCESS) return *error = "warm-up: " + HixlError("TransferSync", st), false;
    }
    if (!CheckCopies(peer_, s, c, lists, s.copies, error)) return *error = "warm-up: " + *error, false;
  }
  if (!ResetDestinations(peer_, s, c, s.copies, error)) return false;
  LoopResult loop;
  if (c.in_flight == 0) {
    hixl::Status last = hixl::SUCCESS;
    loop = RunTimed(limits_, Clock::now(), [&] { return (last = Transfer(s, c, copies[0])) == hixl::SUCCESS; });
    if (!loop.ok) *error = HixlError("TransferSync", last);
  } else {
    loop = RunWindowed(s, c, copies, limits_, error);
  }
  if (!loop.ok) return false;
  if (!CheckCopies(peer_, s, c, lists, loop.calls, error)) return *error = "timed requests: " + *error, false;
  if (!VerifiedRequest(peer_, s, c, lists, error)) return *error = "last request: " + *error, false;
  Measurement& m = row->hixl;
  m.calls = loop.calls;
  m.seconds = Seconds(loop.start, loop.end);
  m.gbps = m.seconds > 0 ? static_cast<double>(c.bytes_per_request()) * m.calls / m.seconds / 1e9 : 0;
  m.ops_per_s = m.seconds > 0 ? static_cast<double>(c.ops) * m.calls / m.seconds : 0;
  m.p50_us = loop.latency_us.Percentile(50);
  m.p99_us = loop.latency_us.Percentile(99);
  const uint64_t checked_copies = std::min(s.copies, loop.calls) + (s.copies > 1 ? s.copies : 0);
  m.verified_calls = 2 + checked_copies;
  m.verified_blocks = (2 + checked_copies) * c.ops;
  row->link = c.transport;
  if (c.transport == "tcp") {
    const std::string& name = s.remote;
    const uint16_t port = static_cast<uint16_t>(std::stoul(name.substr(name.rfind(':') + 1)));
    const int held = CountConnectionsTo(port);
    row->link_connections = held > 1 ? held - 1 : 0;
  }
  return true;
}

bool HixlRunner::MeasureLimits(const HixlConfig& c, HixlRow* row, std::string* error) {
  if (row->socket_bound()) {
    const uint64_t bytes = c.bytes_per_request();
    const uint64_t copies = RequestCopies(c);
    return socket_.Measure(c.write, bytes, 1, limits_, &row->socket_one, error, copies) &&
           (row->link_connections <= 0 ||
            socket_.Measure(c.write, bytes, static_cast<unsigned>(row->link_connections), limits_, &row->socket_link,
                            error, copies)) &&
           socket_.Measure(c.write, bytes, all_cores_, limits_, &row->socket_all, error, copies);
  }
  // Mapped memory (MallocMem over shm) is moved by memcpy; other memory
  // by cross-memory attach.
  const Config config = c.AsConfig();
  return MeasureMemoryLimits(config, MakeBlockLists(config, seed_), limits_, all_cores_, row->mapped(),
                             !row->mapped(), &row->memory, error);
}

HixlRunner::HixlRunner(PeerClient& peer, SocketBaselineClient& socket, const std::string& host,
                       const LoopLimits& limits, unsigned all_cores, uint64_t seed)
    : peer_(peer), socket_(socket), host_(host), limits_(limits), all_cores_(all_cores), seed_(seed) {}

HixlRunner::~HixlRunner() = default;

void HixlRunner::Close() { session_.reset(); }

bool HixlRunner::Run(const HixlConfig& c, HixlRow* row, std::string* error) {
  const auto start = Clock::now();
  // On a shared machine a neighbour's burst can land on either side of one
  // pair of measurements; alternating rounds and taking the median round
  // treats the library and its limit alike.
  std::vector<HixlRow> rounds(std::max<uint32_t>(1, c.rounds));
  std::vector<double> scores;
  for (HixlRow& r : rounds) {
    r.config = c;
    if (!Measure(c, &r, error) || !MeasureLimits(c, &r, error)) return false;
    const double limit = r.target_limit().gbps;
    scores.push_back(limit > 0 ? r.hixl.gbps / limit : r.hixl.gbps);
  }
  std::vector<size_t> order(rounds.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  *row = std::move(rounds[order[order.size() / 2]]);
  row->round_scores = std::move(scores);
  row->wall_seconds = Seconds(start, Clock::now());
  return true;
}

}  // namespace lldd_bench
