#include "tests/hixl_peer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "adxl/adxl_engine.h"
#include "hixl/hixl.h"

namespace lldd_test {
namespace {

struct Buffer {
  void operator()(uint8_t* p) const { std::free(p); }
};

}  // namespace

void FillHixlPattern(uint8_t* p, uint64_t len, uint64_t seed, uint64_t first_offset) {
  for (uint64_t i = 0; i < len; ++i) p[i] = HixlPatternByte(seed, first_offset + i);
}

// The peer process checks memory that its engine's threads wrote for the
// test process, ordered by what the test process told it over the pipe
// after its transfer returned: an ordering ThreadSanitizer cannot see, so
// this read is left out of its instrumentation (as in test_peer.cc).
__attribute__((no_sanitize("thread"))) int64_t FirstPatternMismatch(const uint8_t* p, uint64_t len, uint64_t seed,
                                                                    uint64_t first_offset) {
  const volatile uint8_t* v = p;
  for (uint64_t i = 0; i < len; ++i)
    if (v[i] != HixlPatternByte(seed, first_offset + i)) return static_cast<int64_t>(i);
  return -1;
}

int ServeHixlCommands(const std::map<std::string, std::string>& options, int in, int out) {
  hixl::Hixl engine;
  std::map<hixl::AscendString, hixl::AscendString> opts;
  for (const auto& [k, v] : options) opts[k.c_str()] = v.c_str();
  std::string name;
  hixl::Status st = hixl::FAILED;
  for (int attempt = 0; attempt < 20 && st != hixl::SUCCESS; ++attempt) {
    name = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
    st = engine.Initialize(name.c_str(), opts);
    if (st == hixl::PARAM_INVALID) break;
  }
  if (!WriteLine(out, st == hixl::SUCCESS ? "name " + name : "error initialize " + std::to_string(st))) return 1;
  if (st != hixl::SUCCESS) return 1;
  std::vector<std::unique_ptr<uint8_t, Buffer>> buffers;
  std::string line;
  while (ReadLine(in, &line, -1)) {
    std::istringstream cmd(line);
    std::string verb;
    cmd >> verb;
    std::string answer;
    if (verb == "reg") {
      uint64_t len = 0;
      uint64_t seed = 0;
      cmd >> len >> seed;
      void* p = nullptr;
      if (len == 0 || posix_memalign(&p, 4096, len) != 0) {
        answer = "error alloc";
      } else {
        buffers.emplace_back(static_cast<uint8_t*>(p));
        FillHixlPattern(static_cast<uint8_t*>(p), len, seed);
        hixl::MemDesc desc{};
        desc.addr = reinterpret_cast<uintptr_t>(p);
        desc.len = len;
        hixl::MemHandle handle = nullptr;
        st = engine.RegisterMem(desc, hixl::MEM_HOST, handle);
        answer = st == hixl::SUCCESS ? "ok " + std::to_string(desc.addr) + " " +
                                           std::to_string(reinterpret_cast<uintptr_t>(handle))
                                     : "error register " + std::to_string(st);
      }
    } else if (verb == "mreg") {
      // As reg, with memory from adxl::AdxlEngine::MallocMem (shareable).
      uint64_t len = 0;
      uint64_t seed = 0;
      cmd >> len >> seed;
      void* p = nullptr;
      st = adxl::AdxlEngine::MallocMem(adxl::MEM_HOST, len, &p);
      if (st != hixl::SUCCESS) {
        answer = "error mallocmem " + std::to_string(st);
      } else {
        FillHixlPattern(static_cast<uint8_t*>(p), len, seed);
        hixl::MemHandle handle = nullptr;
        st = engine.RegisterMem({reinterpret_cast<uintptr_t>(p), len}, hixl::MEM_HOST, handle);
        answer = st == hixl::SUCCESS ? "ok " + std::to_string(reinterpret_cast<uintptr_t>(p)) + " " +
                                           std::to_string(reinterpret_cast<uintptr_t>(handle))
                                     : "error register " + std::to_string(st);
      }
    } else if (verb == "rereg") {
      // Registers memory that was registered before (and deregistered)
      // again, refilled with a new seed: the same range as a new region.
      uint64_t addr = 0;
      uint64_t len = 0;
      uint64_t seed = 0;
      cmd >> addr >> len >> seed;
      FillHixlPattern(reinterpret_cast<uint8_t*>(addr), len, seed);
      hixl::MemDesc desc{};
      desc.addr = addr;
      desc.len = len;
      hixl::MemHandle handle = nullptr;
      st = engine.RegisterMem(desc, hixl::MEM_HOST, handle);
      answer = st == hixl::SUCCESS ? "ok " + std::to_string(reinterpret_cast<uintptr_t>(handle))
                                   : "error register " + std::to_string(st);
    } else if (verb == "check") {
      uint64_t addr = 0;
      uint64_t len = 0;
      uint64_t seed = 0;
      uint64_t first = 0;
      cmd >> addr >> len >> seed >> first;
      const int64_t bad = FirstPatternMismatch(reinterpret_cast<const uint8_t*>(addr), len, seed, first);
      answer = bad < 0 ? "ok" : "mismatch at " + std::to_string(bad);
    } else if (verb == "await_notifies") {
      // Waits for N notifications, then at once checks [addr, addr + len)
      // against the pattern (what the notifications announce must have
      // landed already); answers "ok NAME=MSG,... data ok|mismatch".
      size_t want = 0;
      uint64_t addr = 0;
      uint64_t len = 0;
      uint64_t seed = 0;
      cmd >> want >> addr >> len >> seed;
      std::vector<hixl::NotifyDesc> got;
      for (int i = 0; i < 10000 && got.size() < want; ++i) {
        std::vector<hixl::NotifyDesc> more;
        if (engine.GetNotifies(more) != hixl::SUCCESS) break;
        got.insert(got.end(), more.begin(), more.end());
        if (got.size() < want) usleep(1000);
      }
      const bool data_ok = len == 0 || FirstPatternMismatch(reinterpret_cast<const uint8_t*>(addr), len, seed) < 0;
      answer = "ok ";
      for (size_t i = 0; i < got.size(); ++i)
        answer += (i ? "," : "") + std::string(got[i].name.GetString()) + "=" + got[i].notify_msg.GetString();
      answer += data_ok ? " data ok" : " data mismatch";
    } else if (verb == "dereg") {
      uintptr_t handle = 0;
      cmd >> handle;
      st = engine.DeregisterMem(reinterpret_cast<hixl::MemHandle>(handle));
      answer = st == hixl::SUCCESS ? "ok" : "error " + std::to_string(st);
    } else if (verb == "quit") {
      engine.Finalize();
      WriteLine(out, "bye");
      return 0;
    } else {
      answer = "error unknown command '" + verb + "'";
    }
    if (!WriteLine(out, answer)) break;
  }
  engine.Finalize();
  return 0;
}

HixlPeer::HixlPeer(std::map<std::string, std::string> options)
    : process_(std::make_unique<PeerProcess>(LLDD_HIXL_PEER_PROGRAM, std::vector<std::string>{}, options, "name ",
                                             &name_)) {}

HixlPeer::~HixlPeer() = default;

std::string HixlPeer::Command(const std::string& line) { return process_->Command(line); }

uint64_t HixlPeer::Register(uint64_t len, uint64_t seed, uint64_t* handle) {
  return RegisterWith("reg", len, seed, handle);
}

uint64_t HixlPeer::RegisterMallocMem(uint64_t len, uint64_t seed, uint64_t* handle) {
  return RegisterWith("mreg", len, seed, handle);
}

uint64_t HixlPeer::RegisterWith(const std::string& verb, uint64_t len, uint64_t seed, uint64_t* handle) {
  std::istringstream a(Command(verb + " " + std::to_string(len) + " " + std::to_string(seed)));
  std::string ok;
  uint64_t addr = 0;
  uint64_t h = 0;
  a >> ok >> addr >> h;
  if (ok != "ok") return 0;
  if (handle != nullptr) *handle = h;
  return addr;
}

std::string HixlPeer::Check(uint64_t addr, uint64_t len, uint64_t seed, uint64_t first_offset) {
  return Command("check " + std::to_string(addr) + " " + std::to_string(len) + " " + std::to_string(seed) + " " +
                 std::to_string(first_offset));
}

void HixlPeer::Kill() { process_->Kill(); }
void HixlPeer::Freeze() { process_->Freeze(); }
void HixlPeer::Thaw() { process_->Thaw(); }
int HixlPeer::Stop() { return process_->Stop(); }

}  // namespace lldd_test
