#include "test_peer.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <dirent.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "gpu/device_memory.h"
#include "gpu/fake_gpu_api.h"
#include "tests/wait_until.h"

namespace lldd_test {

using namespace llm_datadist;

namespace {

// The cache memory the harness fills and reads here is also read and
// written by the library's data threads. The two are ordered only through
// the other process (the command pipe, the peer's sockets), which
// ThreadSanitizer cannot see, so it would report every such access as a
// race: these few accesses are left out of its instrumentation.
#define LLDD_TEST_NOT_TSAN_CHECKED __attribute__((no_sanitize("thread")))

LLDD_TEST_NOT_TSAN_CHECKED std::string RowText(const int32_t* p, uint64_t cols) {
  std::string s;
  for (uint64_t c = 0; c < cols; ++c) s += std::to_string(p[c]) + " ";
  return s;
}

std::string StatusText(Status st) {
  char text[32];
  std::snprintf(text, sizeof(text), "0x%X", st);
  return text;
}

// "ok", or where the first byte that differs from Pattern(seed) is.
LLDD_TEST_NOT_TSAN_CHECKED std::string CheckPattern(const std::vector<uintptr_t>& addrs, uint64_t rows,
                                                    uint64_t cols, int64_t seed) {
  for (uint32_t t = 0; t < addrs.size(); ++t) {
    const auto* p = reinterpret_cast<const int32_t*>(addrs[t]);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t c = 0; c < cols; ++c)
        if (p[r * cols + c] != Pattern(seed, t, r, c))
          return "bad tensor " + std::to_string(t) + " row " + std::to_string(r) + " col " + std::to_string(c) +
                 " holds " + std::to_string(p[r * cols + c]);
  }
  return "ok";
}

}  // namespace

[[noreturn]] void ServeCommands(uint64_t cluster_id, const std::map<std::string, std::string>& extra, int in, int out) {
  std::map<AscendString, AscendString> options{{OPTION_LISTEN_IP_INFO, "127.0.0.1:0"}, {OPTION_DEVICE_ID, "0"}};
  for (const auto& [k, v] : extra) {
    if (k == kFakeGpuOption) {
      // Lives until _exit: the instance uses it to the end.
      auto* gpu = new lldd::FakeGpuApi();
      gpu->SetCopyRate(std::stoull(v));
      lldd::SetGpuApiForTesting(gpu);
      continue;
    }
    if (k == kNetnsOption) {
      if (!EnterNetns(v)) {
        WriteLine(out, "error cannot enter network namespace " + v);
        _exit(3);
      }
      continue;
    }
    options[AscendString(k.c_str())] = AscendString(v.c_str());
  }
  auto dd = std::make_unique<LlmDataDist>(cluster_id, LlmRole::kPrompt);
  if (dd->Initialize(options) != LLM_SUCCESS) {
    WriteLine(out, std::string("error ") + LlmDataDist::GetLastErrorMessage());
    _exit(3);
  }
  WriteLine(out, "port " + std::to_string(dd->GetListenPort()));
  struct Owned {
    std::vector<std::vector<int32_t>> tensors;
    uint64_t rows = 0, cols = 0;
    std::vector<uintptr_t> addrs;
  };
  std::map<int64_t, Owned> caches;
  std::string line;
  while (ReadLine(in, &line)) {
    std::istringstream is(line);
    std::string cmd;
    is >> cmd;
    if (cmd == "quit") break;
    if (cmd == "register" || cmd == "alloc" || cmd == "allocdev") {
      uint32_t n;
      uint64_t rows, cols;
      int64_t seed;
      is >> n >> rows >> cols >> seed;
      Owned o;
      o.rows = rows;
      o.cols = cols;
      int64_t id = -1;
      Status st;
      if (cmd == "register") {
        std::vector<uint64_t> addrs;
        o.tensors.assign(n, std::vector<int32_t>(rows * cols));
        for (auto& t : o.tensors) {
          addrs.push_back(reinterpret_cast<uint64_t>(t.data()));
          o.addrs.push_back(reinterpret_cast<uintptr_t>(t.data()));
        }
        st = dd->RegisterKvCache(Int32Desc(n, rows, cols), addrs, RegisterCfg{}, id);
      } else {
        Cache cache;
        st = dd->AllocateCache(Int32Desc(n, rows, cols, cmd == "allocdev" ? CachePlacement::kDevice : CachePlacement::kHost), cache);
        id = cache.cache_id;
        o.addrs = cache.tensor_addrs;
        if (st == LLM_SUCCESS && cmd == "allocdev" && !lldd::IsDeviceMemory(reinterpret_cast<void*>(o.addrs[0]))) {
          WriteLine(out, "error the kDevice cache is host memory (no GPU)");
          continue;
        }
      }
      if (st != LLM_SUCCESS) {
        WriteLine(out, "error " + std::string(LlmDataDist::GetLastErrorMessage()));
        continue;
      }
      FillPattern(o.addrs, rows, cols, seed);
      caches[id] = std::move(o);
      WriteLine(out, std::to_string(id));
    } else if (cmd == "unregister" || cmd == "dealloc") {
      int64_t id;
      is >> id;
      Status st = cmd == "unregister" ? dd->UnregisterKvCache(id) : dd->DeallocateCache(id);
      caches.erase(id);
      WriteLine(out, st == LLM_SUCCESS ? "ok" : "error");
    } else if (cmd == "row") {
      int64_t id;
      uint32_t t;
      uint64_t r;
      is >> id >> t >> r;
      auto it = caches.find(id);
      if (it == caches.end() || t >= it->second.addrs.size() || r >= it->second.rows) {
        WriteLine(out, "error");
        continue;
      }
      const int32_t* p = reinterpret_cast<const int32_t*>(it->second.addrs[t]) + r * it->second.cols;
      std::string s = RowText(p, it->second.cols);
      WriteLine(out, s);
    } else if (cmd == "pull" || cmd == "push") {
      // The server side acting on its own: either end of a link may move data.
      uint64_t cluster;
      int64_t remote_id, local_id;
      is >> cluster >> remote_id >> local_id;
      Cache local;
      local.cache_id = local_id;
      CacheIndex remote{cluster, remote_id, 0};
      Status st = cmd == "pull" ? dd->PullKvCache(remote, local) : dd->PushKvCache(local, remote);
      WriteLine(out, StatusText(st));
    } else if (cmd == "pushblocks" || cmd == "pushbatch") {
      // A push with every argument spelled out, as the vendor's samples
      // make them (layer ranges, tensors per layer, batch indexes).
      uint64_t cluster, remote_batch = 0, local_batch = 0, n = 0;
      int64_t remote_id, local_id;
      int tensors_per_layer;
      KvCacheExtParam ext;
      is >> cluster >> remote_id >> local_id >> tensors_per_layer >> ext.src_layer_range.first >>
          ext.src_layer_range.second >> ext.dst_layer_range.first >> ext.dst_layer_range.second;
      ext.tensor_num_per_layer = static_cast<uint8_t>(tensors_per_layer);
      Cache local;
      local.cache_id = local_id;
      Status st;
      if (cmd == "pushbatch") {
        is >> local_batch >> remote_batch;
        st = dd->PushKvCache(local, CacheIndex{cluster, remote_id, static_cast<uint32_t>(remote_batch)},
                             static_cast<uint32_t>(local_batch), -1, ext);
      } else {
        is >> n;
        std::vector<uint64_t> src(n), dst(n);
        for (auto& b : src) is >> b;
        for (auto& b : dst) is >> b;
        st = dd->PushKvBlocks(local, CacheIndex{cluster, remote_id, 0}, src, dst, ext);
      }
      WriteLine(out, is.fail() ? "error malformed " + cmd : StatusText(st));
    } else if (cmd == "setrole") {
      // "setrole ROLE [ip:port]": without an address the instance becomes a client.
      int role;
      std::string listen;
      is >> role >> listen;
      std::map<AscendString, AscendString> role_options;
      if (!listen.empty()) role_options[OPTION_LISTEN_IP_INFO] = listen.c_str();
      WriteLine(out, StatusText(dd->SetRole(static_cast<LlmRole>(role), role_options)));
    } else if (cmd == "link" || cmd == "unlink") {
      uint64_t cluster;
      std::string ip;
      uint16_t port = 0;
      is >> cluster >> ip >> port;
      std::vector<Status> rets;
      const ClusterInfo c = ClusterAt(cluster, port, ip.c_str());
      const Status st = cmd == "link" ? dd->LinkLlmClusters({c}, rets, 5000) : dd->UnlinkLlmClusters({c}, rets, 5000);
      WriteLine(out, StatusText(st));
    } else if (cmd == "fill" || cmd == "check") {
      // Refills a cache with Pattern(seed), or checks that it holds it.
      int64_t id, seed;
      is >> id >> seed;
      auto it = caches.find(id);
      if (it == caches.end()) {
        WriteLine(out, "error no such cache");
        continue;
      }
      const Owned& o = it->second;
      if (cmd == "fill") {
        FillPattern(o.addrs, o.rows, o.cols, seed);
        WriteLine(out, "ok");
      } else {
        WriteLine(out, CheckPattern(o.addrs, o.rows, o.cols, seed));
      }
    } else if (cmd == "stats") {
      WriteLine(out, ResourceCounts::Now().ToString());
    } else if (cmd == "metrics") {
      // A few of GetStats(), as "name value" pairs.
      const LlmDataDist::Stats m = dd->GetStats();
      WriteLine(out, "links " + std::to_string(m.links) + " accepted " + std::to_string(m.links_accepted) +
                         " completed " + std::to_string(m.handshakes_completed) + " dropped " +
                         std::to_string(m.handshakes_dropped_timeout + m.handshakes_dropped_full +
                                        m.handshakes_dropped_source + m.handshakes_dropped_bad_frame));
    } else {
      WriteLine(out, "error unknown command");
    }
  }
  dd->Finalize();
  dd.reset();
  _exit(0);
}

namespace {
size_t CountEntries(const char* path) {
  size_t n = 0;
  if (DIR* d = opendir(path)) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}
}  // namespace

ResourceCounts ResourceCounts::Now() {
  ResourceCounts c;
  c.fds = CountEntries("/proc/self/fd");
  c.threads = CountEntries("/proc/self/task");
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) c.mappings += line.find("llm_datadist") != std::string::npos;
  c.heap_bytes = mallinfo2().uordblks;
  return c;
}

std::string ResourceCounts::ToString() const {
  return "fds " + std::to_string(fds) + " threads " + std::to_string(threads) + " mappings " +
         std::to_string(mappings) + " heap " + std::to_string(heap_bytes);
}

ResourceCounts ResourceCounts::Parse(const std::string& text) {
  ResourceCounts c;
  std::istringstream is(text);
  std::string word;
  is >> word >> c.fds >> word >> c.threads >> word >> c.mappings >> word >> c.heap_bytes;
  return c;
}

ResourceCounts ForkedServer::Stats() { return ResourceCounts::Parse(Command("stats")); }

bool EnterNetns(const std::string& name) {
  int fd = ::open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::setns(fd, CLONE_NEWNET) == 0;
  ::close(fd);
  // As `ip netns exec` does: a /sys of the new namespace, so that code that
  // lists interfaces in sysfs (UCX does) sees its devices, not the host's.
  // Best effort: without it only such code is affected.
  if (ok && ::unshare(CLONE_NEWNS) == 0 && ::mount("", "/", nullptr, MS_SLAVE | MS_REC, nullptr) == 0) {
    ::umount2("/sys", MNT_DETACH);
    ::mount(name.c_str(), "/sys", "sysfs", 0, nullptr);
  }
  return ok;
}

ForkedServer::ForkedServer(uint64_t cluster_id, std::map<std::string, std::string> options) {
  std::string port;
  process_ = std::make_unique<PeerProcess>(LLDD_TEST_PEER_PROGRAM, std::vector<std::string>{std::to_string(cluster_id)},
                                           options, "port ", &port);
  port_ = static_cast<uint16_t>(std::stoi(port));
}

ForkedServer::~ForkedServer() = default;

std::string ForkedServer::Command(const std::string& line) { return process_->Command(line); }

int64_t ForkedServer::RegisterInt32(uint32_t n, uint64_t rows, uint64_t cols, int64_t seed) {
  std::string a = Command("register " + std::to_string(n) + " " + std::to_string(rows) + " " + std::to_string(cols) +
                          " " + std::to_string(seed));
  return a.rfind("error", 0) == 0 ? -1 : std::stoll(a);
}

int64_t ForkedServer::AllocateInt32(uint32_t n, uint64_t rows, uint64_t cols, int64_t seed) {
  std::string a = Command("alloc " + std::to_string(n) + " " + std::to_string(rows) + " " + std::to_string(cols) +
                          " " + std::to_string(seed));
  return a.rfind("error", 0) == 0 ? -1 : std::stoll(a);
}

std::vector<int32_t> ForkedServer::ReadRow(int64_t cache_id, uint32_t tensor, uint64_t row) {
  std::istringstream is(Command("row " + std::to_string(cache_id) + " " + std::to_string(tensor) + " " +
                                std::to_string(row)));
  std::vector<int32_t> values;
  int32_t v;
  while (is >> v) values.push_back(v);
  return values;
}

void ForkedServer::Kill() { process_->Kill(); }
void ForkedServer::Freeze() { process_->Freeze(); }
void ForkedServer::Thaw() { process_->Thaw(); }
int ForkedServer::Stop() { return process_->Stop(); }

// Volatile, so that the loop stays a loop here and does not become a call
// to an (instrumented) fill or memset.
LLDD_TEST_NOT_TSAN_CHECKED void StoreInts(int32_t* p, size_t n, int32_t value) {
  volatile int32_t* v = p;
  for (size_t i = 0; i < n; ++i) v[i] = value;
}
LLDD_TEST_NOT_TSAN_CHECKED int32_t LoadInt(const int32_t* p) { return *p; }

LLDD_TEST_NOT_TSAN_CHECKED bool RowHoldsAt(const int32_t* row, uint64_t cols, int64_t seed, uint32_t src_tensor,
                                           uint64_t src_row) {
  const volatile int32_t* v = row;
  const uint64_t row_seed = RowSeed(seed, src_tensor, src_row);
  bool same = true;
  for (uint64_t c = 0; c < cols; ++c) same = same && v[c] == PatternAt(row_seed, c);
  return same;
}

LLDD_TEST_NOT_TSAN_CHECKED bool RowIsZeroAt(const int32_t* row, uint64_t cols) {
  const volatile int32_t* v = row;
  bool zero = true;
  for (uint64_t c = 0; c < cols; ++c) zero = zero && v[c] == 0;
  return zero;
}

bool RowHolds(const Cache& cache, uint32_t t, uint64_t row, uint64_t cols, int64_t seed, uint32_t src_tensor,
              uint64_t src_row) {
  const auto* p = reinterpret_cast<const int32_t*>(cache.tensor_addrs[t]) + row * cols;
  return lldd_tools::MatchesPattern(p, cols * sizeof(int32_t), RowSeed(seed, src_tensor, src_row));
}

LLDD_TEST_NOT_TSAN_CHECKED void FillPattern(const std::vector<uintptr_t>& addrs, uint64_t rows, uint64_t cols,
                                            int64_t seed) {
  for (uint32_t t = 0; t < addrs.size(); ++t) {
    auto* p = reinterpret_cast<int32_t*>(addrs[t]);
    for (uint64_t r = 0; r < rows; ++r) {
      // The same values as lldd_tools::FillPattern, stored here (volatile, as
      // in StoreInts) so that no store leaves this uninstrumented function.
      volatile int32_t* v = p + r * cols;
      const uint64_t row_seed = RowSeed(seed, t, r);
      for (uint64_t c = 0; c < cols; ++c) v[c] = PatternAt(row_seed, c);
    }
  }
}

CacheDesc Int32Desc(uint32_t num_tensors, uint64_t rows, uint64_t cols, CachePlacement placement) {
  CacheDesc d;
  d.placement = placement;
  d.num_tensors = num_tensors;
  d.data_type = DT_INT32;
  d.shape = {static_cast<int64_t>(rows), static_cast<int64_t>(cols)};
  return d;
}

std::map<AscendString, AscendString> ClientOptions(std::map<std::string, std::string> extra) {
  std::map<AscendString, AscendString> options{{OPTION_DEVICE_ID, "0"}};
  for (const auto& [k, v] : extra) options[AscendString(k.c_str())] = AscendString(v.c_str());
  return options;
}

ClusterInfo ClusterAt(uint64_t cluster_id, uint16_t port, const char* ip) {
  ClusterInfo c;
  c.remote_cluster_id = cluster_id;
  IpInfo remote;
  remote.ip = ip;
  remote.port = port;
  c.remote_ip_infos.push_back(remote);
  return c;
}

}  // namespace lldd_test
