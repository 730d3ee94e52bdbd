#include "bench/peer.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "bench/row_pattern.h"
#include "bench/bench_config.h"
#include "bench/peer_protocol.h"
#include "bench/user_memory.h"
#include "common/datadist_setup.h"
#include "hixl/hixl.h"

namespace lldd_bench {
namespace {

using namespace llm_datadist;

// User memory for RegisterKvCache: page-aligned like a real engine's
// tensors, and unmapped only after the library let go of it.
struct UserTensors {
  std::vector<void*> maps;
  size_t bytes = 0;
  bool mallocmem = false;  // from adxl::AdxlEngine::MallocMem, not mmap
  ~UserTensors() {
    for (void* p : maps) FreeUserBuffer(mallocmem, p, bytes);
  }
};

struct PeerCache {
  bool registered = false;
  bool hixl = false;  // the HIXL engine's region, not a library cache
  uint32_t tensors = 0;
  uint64_t rows = 0;
  uint64_t row_bytes = 0;
  std::vector<uintptr_t> addrs;
  std::unique_ptr<UserTensors> user;
  uint8_t* Row(uint32_t t, uint64_t r) const { return reinterpret_cast<uint8_t*>(addrs[t]) + r * row_bytes; }
};

class Peer {
 public:
  Peer(lldd_tools::LineChannel& channel, std::string host, uint16_t port)
      : channel_(channel), host_(std::move(host)), port_(port) {}
  ~Peer() { Reset(); }

  int Serve(uint16_t socket_port) {
    channel_.WriteLine("hello " + std::to_string(socket_port));
    std::string line;
    while (channel_.ReadLine(&line)) {
      std::istringstream in(line);
      std::string cmd;
      in >> cmd;
      if (cmd == "quit") {
        Reset();
        channel_.WriteLine("ok");
        return 0;
      }
      std::string answer;
      if (cmd == "init") answer = Init(in);
      else if (cmd == "cache") answer = Create(in);
      else if (cmd == "fill") answer = Fill(in);
      else if (cmd == "check") answer = Check(in);
      else if (cmd == "free") answer = Free(in);
      else if (cmd == "hixl") answer = StartHixl(in);
      else answer = "error unknown command '" + cmd + "'";
      if (!channel_.WriteLine(answer)) break;
    }
    Reset();
    return 0;  // the benchmarking side went away; it reports its own errors
  }

 private:
  void Reset() {
    if (hixl_) {
      hixl_->Finalize();
      hixl_.reset();
    }
    if (dd_) {
      dd_->Finalize();  // before the user memory it may still reference goes
      dd_.reset();
    }
    caches_.clear();
  }

  std::string Init(std::istringstream& in) {
    std::string transport;
    int64_t wait_ms = 0;
    uint32_t conns = 0;
    if (!(in >> transport >> wait_ms >> conns)) return "error usage: init <transport> <wait ms> <tcp conns>";
    Reset();
    lldd_tools::InstanceConfig config;
    config.listen = host_ + ":" + std::to_string(port_);
    config.transport = transport == "-" ? "" : transport;
    config.wait_ms = wait_ms;
    config.tcp_connections = conns;
    dd_ = std::make_unique<LlmDataDist>(kPeerClusterId, LlmRole::kPrompt);
    Status st = dd_->Initialize(lldd_tools::BuildOptions(config));
    if (st != LLM_SUCCESS) {
      std::string why = lldd_tools::DescribeFailure(st);
      dd_.reset();
      // A data path this build lacks is refused as an invalid option value.
      return (st == LLM_PARAM_INVALID && !config.transport.empty() ? "unavailable " : "error ") + why;
    }
    return "ok " + std::to_string(dd_->GetListenPort());
  }

  std::string Create(std::istringstream& in) {
    if (!dd_) return "error no instance (init first)";
    std::string memory;
    PeerCache c;
    uint64_t seed = 0;
    if (!(in >> memory >> c.tensors >> c.rows >> c.row_bytes >> seed) || c.tensors == 0 || c.rows == 0 ||
        c.row_bytes == 0)
      return "error usage: cache <memory> <tensors> <rows> <row bytes> <seed>";
    CacheDesc desc;
    desc.placement = CachePlacement::kHost;
    desc.num_tensors = c.tensors;
    desc.data_type = DT_UINT8;
    desc.shape = {static_cast<int64_t>(c.rows), static_cast<int64_t>(c.row_bytes)};
    int64_t id = -1;
    Status st;
    if (memory == kMemoryRegistered) {
      c.registered = true;
      c.user = std::make_unique<UserTensors>();
      c.user->bytes = c.rows * c.row_bytes;
      std::vector<uint64_t> addrs;
      for (uint32_t t = 0; t < c.tensors; ++t) {
        void* p = nullptr;
        if (std::string why = AllocateUserBuffer(false, c.user->bytes, &p); !why.empty()) return "error " + why;
        c.user->maps.push_back(p);
        addrs.push_back(reinterpret_cast<uint64_t>(p));
        c.addrs.push_back(reinterpret_cast<uintptr_t>(p));
      }
      st = dd_->RegisterKvCache(desc, addrs, RegisterCfg{}, id);
    } else if (memory == kMemoryAllocated) {
      Cache cache;
      st = dd_->AllocateCache(desc, cache);
      id = cache.cache_id;
      c.addrs = cache.tensor_addrs;
    } else {
      return "error unknown memory kind '" + memory + "'";
    }
    if (st != LLM_SUCCESS) return "error " + lldd_tools::DescribeFailure(st);
    for (uint32_t t = 0; t < c.tensors; ++t)
      for (uint64_t r = 0; r < c.rows; ++r) lldd_tools::FillPattern(c.Row(t, r), c.row_bytes, RowSeed(seed, t, r));
    caches_[id] = std::move(c);
    return "ok " + std::to_string(id);
  }

  PeerCache* Find(std::istringstream& in, int64_t* id) {
    if (!(in >> *id)) return nullptr;
    auto it = caches_.find(*id);
    return it == caches_.end() ? nullptr : &it->second;
  }

  std::string Fill(std::istringstream& in) {
    int64_t id;
    uint64_t seed;
    PeerCache* c = Find(in, &id);
    if (c == nullptr || !(in >> seed)) return "error usage: fill <cache id> <seed> <row>...";
    uint64_t r;
    while (in >> r) {
      if (r >= c->rows) return "error row " + std::to_string(r) + " out of range";
      for (uint32_t t = 0; t < c->tensors; ++t) lldd_tools::FillPattern(c->Row(t, r), c->row_bytes, RowSeed(seed, t, r));
    }
    return "ok";
  }

  std::string Check(std::istringstream& in) {
    int64_t id;
    uint64_t seed;
    PeerCache* c = Find(in, &id);
    if (c == nullptr || !(in >> seed)) return "error usage: check <cache id> <seed> <dst row>:<src row>...";
    std::string pair;
    while (in >> pair) {
      size_t colon = pair.find(':');
      if (colon == std::string::npos) return "error bad pair '" + pair + "'";
      uint64_t dst = std::stoull(pair.substr(0, colon));
      uint64_t src = std::stoull(pair.substr(colon + 1));
      if (dst >= c->rows) return "error row " + std::to_string(dst) + " out of range";
      for (uint32_t t = 0; t < c->tensors; ++t) {
        size_t at = lldd_tools::FindPatternMismatch(c->Row(t, dst), c->row_bytes, RowSeed(seed, t, src));
        if (at != c->row_bytes)
          return "error tensor " + std::to_string(t) + " row " + std::to_string(dst) + " (expected source row " +
                 std::to_string(src) + ") differs at byte " + std::to_string(at);
      }
    }
    return "ok";
  }

  std::string Free(std::istringstream& in) {
    int64_t id;
    PeerCache* c = Find(in, &id);
    if (c == nullptr) return "ok";
    if (c->hixl) return "error the HIXL region goes with its engine";
    Status st = c->registered ? dd_->UnregisterKvCache(id) : dd_->DeallocateCache(id);
    caches_.erase(id);
    return st == LLM_SUCCESS ? "ok" : "error " + lldd_tools::DescribeFailure(st);
  }

  // A loopback run has no fixed port: a free one, as the kernel picks it.
  uint16_t HixlPort() const {
    if (port_ != 0) return port_;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    uint16_t port = 0;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    if (fd >= 0) ::close(fd);
    return port;
  }

  // A HIXL engine listening in place of the library instance, with one
  // registered region of `slots` slots filled like cache rows (tensor 0),
  // so fill/check serve it under its id.
  std::string StartHixl(std::istringstream& in) {
    std::string transport;
    PeerCache c;
    uint64_t seed = 0;
    std::string memory;
    if (!(in >> transport >> c.rows >> c.row_bytes >> seed) || c.rows == 0 || c.row_bytes == 0 ||
        (in >> memory && memory != "mallocmem"))
      return "error usage: hixl <transport> <slots> <slot bytes> <seed> [mallocmem]";
    Reset();
    const std::string name = host_ + ":" + std::to_string(HixlPort());
    std::map<hixl::AscendString, hixl::AscendString> options;
    if (transport != "-") options["llm.TransferBackend"] = transport.c_str();
    hixl_ = std::make_unique<hixl::Hixl>();
    hixl::Status st = hixl_->Initialize(name.c_str(), options);
    if (st != hixl::SUCCESS) {
      hixl_.reset();
      return "error hixl Initialize(" + name + ") returned " + std::to_string(st);
    }
    c.registered = true;
    c.hixl = true;
    c.tensors = 1;
    c.user = std::make_unique<UserTensors>();
    c.user->bytes = c.rows * c.row_bytes;
    c.user->mallocmem = !memory.empty();
    void* p = nullptr;
    if (std::string why = AllocateUserBuffer(c.user->mallocmem, c.user->bytes, &p); !why.empty()) return "error " + why;
    c.user->maps.push_back(p);
    c.addrs.push_back(reinterpret_cast<uintptr_t>(p));
    for (uint64_t r = 0; r < c.rows; ++r) lldd_tools::FillPattern(c.Row(0, r), c.row_bytes, RowSeed(seed, 0, r));
    hixl::MemHandle handle = nullptr;
    st = hixl_->RegisterMem({reinterpret_cast<uintptr_t>(p), c.user->bytes}, hixl::MEM_HOST, handle);
    if (st != hixl::SUCCESS) return "error hixl RegisterMem returned " + std::to_string(st);
    caches_[kHixlRegionId] = std::move(c);
    return "ok " + name + " " + std::to_string(reinterpret_cast<uintptr_t>(p));
  }

  lldd_tools::LineChannel& channel_;
  const std::string host_;
  const uint16_t port_;
  std::unique_ptr<LlmDataDist> dd_;
  std::unique_ptr<hixl::Hixl> hixl_;  // finalized before its region is unmapped
  std::map<int64_t, PeerCache> caches_;
};

}  // namespace

int ServePeerSession(lldd_tools::LineChannel& channel, const std::string& listen_host, uint16_t library_port,
                     uint16_t socket_port) {
  Peer peer(channel, listen_host, library_port);
  return peer.Serve(socket_port);
}

}  // namespace lldd_bench
