// llm_datadist_bench: the project's performance figures.
//
// Each row measures one way of moving KV data (op, unit, block size,
// blocks per call, transport, client threads, the serving side's memory
// kind) and, right after it, the limits it is judged against, measured on
// the same machine in the same run: plain TCP sockets between the same two
// processes (1 connection, as many as the library's link, one per core) for
// rows whose link is TCP; memcpy (library-allocated caches) or cross-memory
// attach (registered memory) of the same ranges, by one thread and by all
// cores, for same-host rows. The serving side is a forked child on
// loopback, or `--listen` on another machine.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_config.h"
#include "bench/hixl_runner.h"
#include "bench/library_runner.h"
#include "bench/link_sockets.h"
#include "bench/machine.h"
#include "bench/memcpy_baseline.h"
#include "bench/peer.h"
#include "bench/peer_client.h"
#include "bench/peer_protocol.h"
#include "bench/report.h"
#include "bench/socket_baseline.h"
#include "bench/targets.h"
#include "common/child_process.h"
#include "common/datadist_setup.h"
#include "common/stats_summary.h"
#include "common/tcp.h"
#include "common/transports.h"
#include "common/units.h"

namespace {

using namespace lldd_bench;

struct Args {
  bool quick = false;
  bool smoke = false;
  bool json = false;
  bool hixl = false;
  std::vector<uint32_t> in_flight;  // HIXL rows kept (0: sync); empty: all
  bool distinct_requests = false;
  bool mallocmem = false;
  uint32_t rounds = 0;  // 0: 3 with --quick, else 1
  std::string json_out;
  std::vector<std::string> transports;
  std::vector<std::string> ops{"pull", "push"};
  std::vector<std::string> units{"blocks", "cache"};
  std::vector<std::string> block_sizes{"4K", "64K", "1M", "4M"};
  std::vector<uint64_t> blocks_per_call{1, 16, 256, 4096};
  std::vector<uint32_t> threads{1};
  std::vector<std::string> memories{kMemoryAllocated, kMemoryRegistered};
  uint32_t tensors = 1;
  bool contiguous = false;
  std::string max_call_bytes = "256M";
  double seconds = 0.5;
  uint64_t min_calls = 3;
  uint64_t seed = 1;
  std::string listen;
  std::string connect;
  bool once = false;
  uint32_t tcp_connections = 0;
  std::vector<std::string> client_options;
  int64_t wait_ms = 60000;
};

int Fail(const std::string& why) {
  std::fprintf(stderr, "llm_datadist_bench: FAILED: %s\n", why.c_str());
  return 1;
}

std::string Describe(const Config& c) {
  return std::string(OpName(c.op)) + " " + UnitName(c.unit) + " transport=" + c.transport + " memory=" + c.memory +
         " block=" + lldd_tools::FormatBytes(c.block_bytes) + " n=" + std::to_string(c.blocks_per_call) +
         " threads=" + std::to_string(c.threads);
}

bool BuildConfigs(const Args& a, const std::vector<std::string>& transports, std::vector<Config>* out,
                  std::string* error) {
  if (a.smoke && !a.hixl) {
    *out = SmokeSweep(transports);
    return true;
  }
  if (a.hixl) {
    // The library row the HIXL sync READ is judged against, per transport.
    for (const std::string& t : transports) {
      Config c;
      c.transport = t;
      c.memory = kMemoryRegistered;
      c.block_bytes = a.smoke ? 4096 : 1 << 20;
      out->push_back(c);
    }
    return true;
  }
  if (a.quick) {
    *out = QuickSweep(transports, a.threads);
    return true;
  }
  SweepSpec spec;
  spec.transports = transports;
  spec.memories = a.memories;
  spec.ops.clear();
  for (const auto& o : a.ops) {
    if (o != "pull" && o != "push") return *error = "unknown op '" + o + "'", false;
    spec.ops.push_back(o == "pull" ? Op::kPull : Op::kPush);
  }
  spec.units.clear();
  for (const auto& u : a.units) {
    if (u != "blocks" && u != "cache") return *error = "unknown unit '" + u + "'", false;
    spec.units.push_back(u == "blocks" ? Unit::kBlocks : Unit::kCache);
  }
  for (const auto& m : a.memories)
    if (m != kMemoryAllocated && m != kMemoryRegistered) return *error = "unknown memory kind '" + m + "'", false;
  spec.block_sizes.clear();
  for (const auto& s : a.block_sizes) {
    uint64_t b;
    if (!lldd_tools::ParseSize(s, &b) || b == 0) return *error = "bad block size '" + s + "'", false;
    spec.block_sizes.push_back(b);
  }
  spec.blocks_per_call = a.blocks_per_call;
  spec.threads = a.threads;
  spec.tensors = a.tensors;
  spec.contiguous = a.contiguous;
  if (!lldd_tools::ParseSize(a.max_call_bytes, &spec.max_call_bytes))
    return *error = "bad --max-call-bytes '" + a.max_call_bytes + "'", false;
  *out = BuildSweep(spec);
  if (out->empty()) return *error = "the sweep is empty (every call exceeds --max-call-bytes?)", false;
  return true;
}

// --listen: serve benchmarking sessions from another machine.
int RunListener(const Args& a) {
  std::string host;
  uint16_t port;
  if (!lldd_tools::ParseHostPort(a.listen, &host, &port) || port == 0 || port > 65535 - kSocketPortOffset)
    return Fail("--listen wants HOST:PORT with a fixed port");
  std::string error;
  SocketBaselineServer sockets;
  if (!sockets.Start(host, static_cast<uint16_t>(port + kSocketPortOffset), &error)) return Fail(error);
  int control = lldd_tools::TcpListen(host, static_cast<uint16_t>(port + kControlPortOffset), &error);
  if (control < 0) return Fail(error);
  std::fprintf(stderr, "llm_datadist_bench: serving on %s (library :%u, side channel :%u, raw-socket baseline :%u)\n",
               host.c_str(), port, port + kControlPortOffset, port + kSocketPortOffset);
  do {
    int fd = ::accept4(control, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    lldd_tools::SetNoDelay(fd);
    lldd_tools::LineChannel channel(fd, fd);
    ServePeerSession(channel, host, port, sockets.port());
    std::fprintf(stderr, "llm_datadist_bench: session ended\n");
  } while (!a.once);
  ::close(control);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  Args a;
  CLI::App app{"llm_datadist benchmark: KV-cache transfer speed against memcpy and a raw TCP socket, measured in "
               "the same run. Spawns its own serving peer on loopback unless --connect is given."};
  app.add_flag("--quick", a.quick, "a short fixed sweep (about 1 min per transport on 2 cores); only --transports, --threads and --seconds apply");
  app.add_flag("--smoke", a.smoke, "a few tiny verified configs (under a second), for tests; only --transports applies");
  app.add_flag("--hixl", a.hixl,
               "the HIXL rows instead (TransferSync and TransferAsync with 1/8/64 requests in flight; READ and WRITE; "
               "4K/64K/1M ops; 1 and 256 ops per request), beside the library pull of one 1 MiB block; with --quick, "
               "the rows its targets judge. Default transports: tcp,shm");
  app.add_option("--in-flight", a.in_flight,
                 "with --hixl: only the rows with these requests in flight (0: TransferSync), e.g. 1,8")
      ->delimiter(',');
  app.add_flag("--distinct-requests", a.distinct_requests,
               "with --hixl: each request in flight moves its own bytes (up to 64 MiB a side; the socket limit cycles "
               "through as much) rather than all naming one buffer");
  app.add_flag("--mallocmem", a.mallocmem,
               "with --hixl: both sides' memory comes from adxl::AdxlEngine::MallocMem, which a peer on this host maps "
               "(shm), rather than from mmap");
  app.add_option("--rounds", a.rounds,
                 "with --hixl: measure each row and its limits this many times, alternating, and report the round "
                 "with the median ratio (default 3 with --quick, else 1)")
      ->check(CLI::Range(1, 99));
  app.add_flag("--json", a.json, "JSON lines instead of a table: the machine, one object per row, the targets");
  app.add_option("--json-out", a.json_out, "also write the JSON lines to this file (with the table on stdout)");
  app.add_option("--transports", a.transports,
                 "data paths to compare (default: every known one this build has): " + lldd_tools::KnownTransportsHelp())
      ->delimiter(',');
  app.add_option("--ops", a.ops, "pull,push")->delimiter(',')->capture_default_str();
  app.add_option("--units", a.units, "blocks (Pull/PushKvBlocks), cache (Pull/PushKvCache of one [batch,row] row)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--block-sizes", a.block_sizes, "bytes per block per tensor (4K..4M)")->delimiter(',')->capture_default_str();
  app.add_option("--blocks-per-call", a.blocks_per_call, "blocks per call (1..4096)")->delimiter(',')->capture_default_str();
  app.add_option("--threads", a.threads, "client threads calling at once on one instance")->delimiter(',')->capture_default_str();
  app.add_option("--memory", a.memories, "the serving side's caches: allocated (AllocateCache), registered (RegisterKvCache)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--tensors", a.tensors, "tensors per cache (a block moves once per tensor)")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_flag("--contiguous", a.contiguous, "block lists 0..n-1 on both sides (merged) instead of random permutations");
  app.add_option("--max-call-bytes", a.max_call_bytes, "skip configs moving more per call")->capture_default_str();
  auto* seconds = app.add_option("--seconds", a.seconds, "time per config and per limit (--quick: 0.3 unless given)")
                      ->capture_default_str()
                      ->check(CLI::PositiveNumber);
  app.add_option("--min-calls", a.min_calls, "calls per config at least")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", a.seed, "seed of the block lists")->capture_default_str();
  auto* listen = app.add_option("--listen", a.listen, "serve on HOST:PORT for a --connect run on another machine "
                                "(uses PORT, PORT+1 and PORT+2)");
  app.add_option("--connect", a.connect, "benchmark against a --listen HOST:PORT")->excludes(listen);
  app.add_flag("--once", a.once, "with --listen: exit after one session");
  app.add_option("--tcp-connections", a.tcp_connections, "llm.TcpConnectionsPerLink on both sides (0: default)")
      ->check(CLI::Range(0, 64));
  app.add_option("--client-option", a.client_options,
                 "KEY=VALUE passed to the measuring (client) instance's Initialize, e.g. llm.CopyThreads=1; repeatable");
  app.add_option("--wait-ms", a.wait_ms, "OPTION_SYNC_CACHE_WAIT_TIME on both sides")->capture_default_str()->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  if (!a.listen.empty()) return RunListener(a);

  LoopLimits limits{a.seconds, a.min_calls, 1000000};
  if (a.quick && seconds->count() == 0) limits = {0.3, 3, 1000000};
  if (a.smoke) limits = {0.02, 2, 1000};
  const bool explicit_transports = !a.transports.empty();
  const std::vector<std::string> transports =
      explicit_transports ? a.transports
                          : (a.hixl ? std::vector<std::string>{"tcp", "shm"} : lldd_tools::KnownTransportNames());
  std::vector<Config> configs;
  std::string error;
  if (!BuildConfigs(a, transports, &configs, &error)) return Fail(error);

  // The peer first: this process must not have started threads (see child_process.h).
  std::string host = "127.0.0.1";
  std::unique_ptr<lldd_tools::ChildProcess> child;
  std::unique_ptr<lldd_tools::LineChannel> remote_channel;
  lldd_tools::LineChannel* channel;
  if (a.connect.empty()) {
    child = lldd_tools::ChildProcess::Fork([](lldd_tools::LineChannel& ch) {
      SocketBaselineServer sockets;
      std::string why;
      if (!sockets.Start("127.0.0.1", 0, &why)) {
        ch.WriteLine("error " + why);
        return 2;
      }
      return ServePeerSession(ch, "127.0.0.1", 0, sockets.port());
    });
    if (!child) return Fail("cannot fork the serving peer");
    channel = &child->channel();
  } else {
    uint16_t port;
    if (!lldd_tools::ParseHostPort(a.connect, &host, &port)) return Fail("--connect wants HOST:PORT");
    int fd = lldd_tools::TcpConnect(host, static_cast<uint16_t>(port + kControlPortOffset), 10000, &error);
    if (fd < 0) return Fail("cannot reach the --listen side: " + error);
    lldd_tools::SetNoDelay(fd);
    remote_channel = std::make_unique<lldd_tools::LineChannel>(fd, fd);
    channel = remote_channel.get();
  }
  PeerClient peer(*channel);
  uint16_t socket_port = 0;
  if (!peer.Hello(&socket_port, &error)) return Fail(error);
  SocketBaselineClient socket;
  if (!socket.Connect(host, socket_port, &error)) return Fail("raw-socket baseline: " + error);

  const Machine machine = DescribeMachine();
  std::FILE* json_file = nullptr;
  if (!a.json_out.empty() && (json_file = std::fopen(a.json_out.c_str(), "w")) == nullptr)
    return Fail("cannot write --json-out " + a.json_out);
  auto json_line = [&](const std::string& line) {
    if (a.json) std::printf("%s\n", line.c_str());
    if (json_file) std::fprintf(json_file, "%s\n", line.c_str());
    std::fflush(a.json ? stdout : json_file);
  };
  const unsigned all_cores = AllCores(machine);
  const std::string serving_side = a.connect.empty() ? "a forked child on loopback" : a.connect;
  json_line(JsonMachine(machine, serving_side, a.contiguous));
  if (!a.json) {
    PrintMachineHeader(stdout, machine);
    std::printf("llm_datadist_bench: %zu configs, %.2f s or %llu calls each; serving side %s; block lists %s\n",
                configs.size(), limits.min_seconds, static_cast<unsigned long long>(limits.min_calls),
                serving_side.c_str(), a.contiguous ? "contiguous (0..n-1 on both sides)" : "random permutations");
    std::printf("GB/s = 1e9 B/s over all client threads; conns = TCP data connections the link held after the row. "
                "Limits, measured right after each row on the same ranges and bytes per call: tcp rows: plain TCP "
                "sockets between the same processes (1 connection, the link's count, one per core); shm rows: memcpy "
                "(allocated) or cross-memory attach, process_vm_readv/writev (registered), by 1 thread and by all %u cores. one / same / all: the "
                "limit's GB/s with n threads or connections (1; the link's connections; one per core), x = row / limit\n",
                all_cores);
    PrintTableHeader(stdout);
  }

  std::vector<Row> rows;
  std::vector<HixlRow> hixl_rows;
  std::vector<HixlConfig> hixl_configs = a.hixl ? HixlSweep(transports, a.quick, a.smoke, a.in_flight) : std::vector<HixlConfig>{};
  for (HixlConfig& hc : hixl_configs) {
    hc.distinct = a.distinct_requests;
    hc.mallocmem = a.mallocmem;
    hc.rounds = a.rounds != 0 ? a.rounds : (a.quick ? 3 : 1);
  }
  HixlRunner hixl_runner(peer, socket, host, limits, all_cores, a.seed);
  bool hixl_header = false;
  uint64_t verified_calls = 0;
  uint64_t verified_blocks = 0;
  int status = 0;
  for (size_t i = 0; i < configs.size() && status == 0;) {
    const std::string transport = configs[i].transport;
    size_t end = i;
    while (end < configs.size() && configs[end].transport == transport) ++end;
    const size_t begin = i;
    i = end;

    uint16_t lib_port = 0;
    auto init = peer.Init(transport, a.wait_ms, a.tcp_connections, &lib_port, &error);
    if (init == PeerClient::InitResult::kUnavailable && !explicit_transports) {
      std::fprintf(stderr, "note: transport '%s' skipped: %s\n", transport.c_str(), error.c_str());
      continue;
    }
    if (init != PeerClient::InitResult::kOk) {
      status = Fail("transport " + transport + ": " + error);
      break;
    }
    lldd_tools::InstanceConfig ic{"", transport, a.wait_ms, a.tcp_connections, {}};
    for (const std::string& kv : a.client_options) {
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) ic.extra[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    auto dd = lldd_tools::StartInstance(kBenchClusterId, llm_datadist::LlmRole::kDecoder, ic, &error);
    if (!dd || !lldd_tools::LinkTo(*dd, kPeerClusterId, host, lib_port, 10000, &error)) {
      status = Fail("transport " + transport + ": " + error);
      break;
    }
    const std::string link = dd->GetLinkTransport(kPeerClusterId);
    LibraryRunner runner(*dd, peer, limits, a.seed);
    for (size_t k = begin; k < end; ++k) {
      Row row;
      row.config = configs[k];
      row.link = link;
      const auto row_start = Clock::now();
      if (!runner.Run(row.config, &row.library, &error)) {
        status = Fail(Describe(row.config) + ": " + error);
        break;
      }
      const Config& c = row.config;
      verified_calls += row.library.verified_calls;
      verified_blocks += row.library.verified_blocks;
      if (row.kind() == LimitKind::kSocket) {
        // Data connections dial the peer's listen port, as the control channel does.
        const int held = CountConnectionsTo(lib_port);
        row.link_connections = held > 1 ? held - 1 : static_cast<int>(a.tcp_connections);
        const bool push = c.op == Op::kPush;
        const uint64_t bytes = c.bytes_per_call();
        if (!socket.Measure(push, bytes, 1, limits, &row.socket_one, &error) ||
            (row.link_connections > 0 &&
             !socket.Measure(push, bytes, static_cast<unsigned>(row.link_connections), limits, &row.socket_link, &error)) ||
            !socket.Measure(push, bytes, all_cores, limits, &row.socket_all, &error)) {
          status = Fail("raw-socket baseline: " + error);
          break;
        }
      } else if (!MeasureMemoryLimits(c, runner.ListsFor(c, 0), limits, all_cores, row.kind() == LimitKind::kMemcpy,
                                      row.kind() == LimitKind::kCma, &row.memory, &error)) {
        status = Fail(error);
        break;
      }
      row.wall_seconds = Seconds(row_start, Clock::now());
      json_line(JsonRow(row));
      if (!a.json) PrintTableRow(stdout, row);
      rows.push_back(row);
    }
    runner.ReleaseCaches();
    if (!a.json) std::printf("GetStats() of the %s client:\n%s", transport.c_str(), lldd_tools::StatsSummary(dd->GetStats()).c_str());
    dd->Finalize();
    for (const HixlConfig& hc : hixl_configs) {
      if (status != 0 || hc.transport != transport) continue;
      if (!a.json && !hixl_header) {
        if (a.distinct_requests)
          std::printf("HIXL requests in flight each move their own bytes (up to 64 MiB a side); the socket limits "
                      "cycle through as much memory\n");
        if (a.mallocmem) std::printf("HIXL memory on both sides from adxl::AdxlEngine::MallocMem\n");
        if (!hixl_configs.empty() && hixl_configs[0].rounds > 1)
          std::printf("each HIXL row: the median of %u alternating rounds of the row and its limits (ratio to the "
                      "target limit)\n",
                      hixl_configs[0].rounds);
        PrintHixlTableHeader(stdout);
      }
      hixl_header = true;
      HixlRow row;
      if (!hixl_runner.Run(hc, &row, &error)) {
        status = Fail(std::string("hixl ") + (hc.write ? "WRITE" : "READ") + " transport=" + hc.transport +
                      " op=" + lldd_tools::FormatBytes(hc.op_bytes) + " x" + std::to_string(hc.ops) +
                      " in flight " + std::to_string(hc.in_flight) + ": " + error);
        break;
      }
      verified_calls += row.hixl.verified_calls;
      verified_blocks += row.hixl.verified_blocks;
      json_line(JsonHixlRow(row));
      if (!a.json) PrintHixlTableRow(stdout, row);
      hixl_rows.push_back(row);
    }
    hixl_runner.Close();
  }

  peer.Quit();
  if (child) {
    int code = child->WaitOrKill(10000);
    if (code != 0 && status == 0) status = Fail("the serving peer exited with status " + std::to_string(code));
  }
  if (status == 0 && rows.empty()) status = Fail("no config ran (no transport available?)");
  if (status != 0) return status;
  const auto targets = a.hixl ? JudgeHixlTargets(hixl_rows, rows) : JudgeTargets(rows, machine);
  json_line(TargetsJson(targets));
  if (json_file) std::fclose(json_file);
  if (!a.json) {
    std::printf("%zu rows; every block of %llu calls (%llu blocks x tensors) checked byte for byte: each config's first "
                "call, and one last call per client thread after its timed calls, destinations reset before each%s\n",
                rows.size() + hixl_rows.size(), static_cast<unsigned long long>(verified_calls),
                static_cast<unsigned long long>(verified_blocks),
                a.distinct_requests ? "; with distinct requests also each copy's untimed pass and its last timed request"
                                    : "");
    std::printf("%s\n", TargetsLine(targets).c_str());
  }
  return status;
}
