// The adxl API (include/adxl/adxl_engine.h), the older name of the HIXL
// engine that Mooncake and others compile against: code written for it
// against a HIXL server in another process, two adxl engines in one
// process, and the memory it allocates (MallocMem), which a peer on this
// host maps instead of copying through the kernel, which another process
// can map through its exported handle, and which is freed once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "adxl/adxl_engine.h"
#include "tests/hixl_peer.h"

namespace {

using namespace adxl;  // as code written for the adxl API does
static_assert(std::is_same_v<adxl::TransferOpDesc, hixl::TransferOpDesc> && std::is_base_of_v<hixl::Hixl, AdxlEngine>);
using lldd_test::FillHixlPattern;
using lldd_test::FirstPatternMismatch;
using lldd_test::HixlPeer;

constexpr int32_t kTimeoutMs = 5000;

// Memory from MallocMem, freed at the end of the scope.
struct Mem {
  void* p = nullptr;
  explicit Mem(size_t len) { EXPECT_EQ(AdxlEngine::MallocMem(MEM_HOST, len, &p), SUCCESS); }
  ~Mem() {
    if (p != nullptr) {
      EXPECT_EQ(AdxlEngine::FreeMem(p), SUCCESS);
    }
  }
  uint8_t* bytes() const { return static_cast<uint8_t*>(p); }
  uintptr_t at(size_t off) const { return reinterpret_cast<uintptr_t>(p) + off; }
};

// Lines of this process's memory map that are MallocMem memory (its own or
// a peer's it mapped).
int MappedMallocMem() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) n += line.find("llm_datadist_mallocmem") != std::string::npos;
  return n;
}

TransferStatus WaitFor(AdxlEngine& e, TransferReq req) {
  TransferStatus s = TransferStatus::WAITING;
  for (int i = 0; i < 10000 && s == TransferStatus::WAITING; ++i) {
    if (e.GetTransferStatus(req, s) != SUCCESS) return TransferStatus::FAILED;
    if (s == TransferStatus::WAITING) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return s;
}

// Code that uses both namespaces compiles: adxl's names are HIXL's
// entities, except the option keys, whose spellings differ.
namespace both {
using namespace adxl;
using namespace hixl;
TEST(AdxlTest, NamesMixWithHixls) {
  AdxlEngine engine;
  Hixl& as_hixl = engine;
  MemDesc desc{};
  MemHandle handle = nullptr;
  EXPECT_EQ(as_hixl.RegisterMem(desc, MEM_HOST, handle), FAILED);  // not initialized
  EXPECT_EQ(std::string(OPTION_AUTO_CONNECT), "AutoConnect");       // one key, both spellings
  EXPECT_STRNE(adxl::OPTION_BUFFER_POOL, hixl::OPTION_BUFFER_POOL);
}
}  // namespace both

class AdxlPathTest : public ::testing::TestWithParam<std::string> {};

// The quickstart written for the adxl API, with its own option spellings,
// against a HIXL server in another process: sync read, async write,
// a notification after it, disconnect.
TEST_P(AdxlPathTest, QuickstartAgainstAHixlServer) {
  constexpr size_t kLen = 1 << 20;
  HixlPeer server(std::map<std::string, std::string>{{"llm.TransferBackend", GetParam()}});
  const uint64_t remote = server.Register(kLen, 3);
  ASSERT_NE(remote, 0u);
  AdxlEngine client;
  ASSERT_EQ(client.Initialize("127.0.0.1", {{"llm.TransferBackend", GetParam().c_str()},
                                            {OPTION_BUFFER_POOL, "4:8"},
                                            {OPTION_RDMA_TRAFFIC_CLASS, "132"},
                                            {OPTION_RDMA_SERVICE_LEVEL, "4"}}),
            SUCCESS);
  Mem local(kLen);
  MemHandle handle = nullptr;
  ASSERT_EQ(client.RegisterMem({local.at(0), kLen}, MEM_HOST, handle), SUCCESS);
  ASSERT_EQ(client.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  ASSERT_EQ(client.TransferSync(server.name().c_str(), READ, {{local.at(0), remote, kLen}}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(local.bytes(), kLen, 3), -1);

  FillHixlPattern(local.bytes(), kLen, 4);
  TransferReq req = nullptr;
  ASSERT_EQ(client.TransferAsync(server.name().c_str(), WRITE, {{local.at(0), remote, kLen / 2}}, TransferArgs{}, req),
            SUCCESS);
  EXPECT_EQ(WaitFor(client, req), TransferStatus::COMPLETED);
  ASSERT_EQ(client.SendNotify(server.name().c_str(), {"kv", "ready"}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(server.Command("await_notifies 1 " + std::to_string(remote) + " " + std::to_string(kLen / 2) + " 4"),
            "ok kv=ready data ok");
  EXPECT_EQ(server.Check(remote + kLen / 2, kLen / 2, 3, kLen / 2), "ok");  // the rest untouched

  EXPECT_EQ(client.Disconnect(server.name().c_str(), kTimeoutMs), SUCCESS);
  EXPECT_EQ(client.TransferSync(server.name().c_str(), READ, {{local.at(0), remote, 8}}, kTimeoutMs), NOT_CONNECTED);
  EXPECT_EQ(client.DeregisterMem(handle), SUCCESS);
  client.Finalize();
  EXPECT_EQ(server.Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Paths, AdxlPathTest, ::testing::Values("shm", "tcp"),
                         [](const auto& info) { return info.param; });

// Registered MallocMem memory is shared: over shm the client maps the
// server's pages (they appear in its memory map) and moves bytes with one
// copy; memory from elsewhere is reached through the kernel and never
// mapped.
TEST(AdxlTest, MallocMemIsMappedByAPeerOnThisHost) {
  constexpr size_t kLen = 256 * 1024;
  HixlPeer server(std::map<std::string, std::string>{{"llm.TransferBackend", "shm"}});
  const uint64_t plain = server.Register(kLen, 5);
  const uint64_t shared = server.RegisterMallocMem(kLen, 6);
  ASSERT_NE(plain, 0u);
  ASSERT_NE(shared, 0u);
  AdxlEngine client;
  ASSERT_EQ(client.Initialize("127.0.0.1", {{"llm.TransferBackend", "shm"}}), SUCCESS);
  std::vector<uint8_t> local(kLen);
  MemHandle handle = nullptr;
  ASSERT_EQ(client.RegisterMem({reinterpret_cast<uintptr_t>(local.data()), kLen}, MEM_HOST, handle), SUCCESS);
  ASSERT_EQ(client.Connect(server.name().c_str(), kTimeoutMs), SUCCESS);
  const auto dst = reinterpret_cast<uintptr_t>(local.data());
  const int before = MappedMallocMem();

  ASSERT_EQ(client.TransferSync(server.name().c_str(), READ, {{dst, plain, kLen}}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(local.data(), kLen, 5), -1);
  EXPECT_EQ(MappedMallocMem(), before);

  ASSERT_EQ(client.TransferSync(server.name().c_str(), READ, {{dst, shared, kLen}}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(FirstPatternMismatch(local.data(), kLen, 6), -1);
  EXPECT_GT(MappedMallocMem(), before);
  FillHixlPattern(local.data(), kLen, 7);
  ASSERT_EQ(client.TransferSync(server.name().c_str(), WRITE, {{dst + 10, shared + 10, 1000}}, kTimeoutMs), SUCCESS);
  EXPECT_EQ(server.Check(shared + 10, 1000, 7, 10), "ok");
  EXPECT_EQ(server.Check(shared + 1010, kLen - 1010, 6, 1010), "ok");
  // Out of the registration: refused, as for any memory.
  EXPECT_EQ(client.TransferSync(server.name().c_str(), READ, {{dst, shared + kLen - 8, 16}}, kTimeoutMs),
            PARAM_INVALID);
  client.Finalize();
  EXPECT_EQ(server.Stop(), 0);
}

// The exported handle lets another process map the same memory: what one
// writes, the other reads.
TEST(AdxlTest, ExportedMemoryIsTheSameMemoryInAnotherProcess) {
  constexpr size_t kLen = 10000;
  Mem mem(kLen);
  ASSERT_NE(mem.p, nullptr);
  FillHixlPattern(mem.bytes(), kLen, 8);
  ShareableHandle h{};
  ASSERT_EQ(AdxlEngine::ExportToShareableHandle(mem.p, h), SUCCESS);
  EXPECT_EQ(h.mem_type, MEM_HOST);
  EXPECT_EQ(h.size, 12288u);  // whole pages
  EXPECT_EQ(h.pid, getpid());
  ShareableHandle again{};
  ASSERT_EQ(AdxlEngine::ExportToShareableHandle(mem.p, again), SUCCESS);
  EXPECT_EQ(std::memcmp(&h, &again, sizeof(h)), 0);

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // only system calls and arithmetic here
    const int fd = open(h.path, O_RDWR);
    if (fd < 0) _exit(2);
    void* p = mmap(nullptr, h.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) _exit(3);
    if (FirstPatternMismatch(static_cast<uint8_t*>(p), kLen, 8) != -1) _exit(4);
    FillHixlPattern(static_cast<uint8_t*>(p), kLen, 9);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(FirstPatternMismatch(mem.bytes(), kLen, 9), -1);
}

TEST(AdxlTest, MemoryCallsRefuseBadArguments) {
  void* p = nullptr;
  EXPECT_EQ(AdxlEngine::MallocMem(static_cast<MemType>(7), 4096, &p), PARAM_INVALID);
  EXPECT_EQ(AdxlEngine::MallocMem(MEM_HOST, 0, &p), PARAM_INVALID);
  EXPECT_EQ(AdxlEngine::MallocMem(MEM_HOST, 4096, nullptr), PARAM_INVALID);
  EXPECT_EQ(p, nullptr);
  // GPU memory: there where a GPU is, FAILED where none is; never a
  // complaint about the arguments.
  const Status device = AdxlEngine::MallocMem(MEM_DEVICE, 4096, &p);
  EXPECT_TRUE(device == SUCCESS || device == FAILED) << device;
  if (device == SUCCESS) {
    EXPECT_EQ(AdxlEngine::FreeMem(p), SUCCESS);
  }

  ASSERT_EQ(AdxlEngine::MallocMem(MEM_HOST, 4096, &p), SUCCESS);
  ShareableHandle h{};
  EXPECT_EQ(AdxlEngine::ExportToShareableHandle(nullptr, h), PARAM_INVALID);
  EXPECT_EQ(AdxlEngine::ExportToShareableHandle(static_cast<uint8_t*>(p) + 64, h), PARAM_INVALID);  // inside
  int elsewhere = 0;
  EXPECT_EQ(AdxlEngine::ExportToShareableHandle(&elsewhere, h), PARAM_INVALID);
  EXPECT_EQ(AdxlEngine::FreeMem(&elsewhere), PARAM_INVALID);
  EXPECT_EQ(AdxlEngine::FreeMem(nullptr), PARAM_INVALID);
  EXPECT_EQ(AdxlEngine::FreeMem(p), SUCCESS);
  EXPECT_EQ(AdxlEngine::ExportToShareableHandle(p, h), PARAM_INVALID);  // freed
  EXPECT_EQ(AdxlEngine::FreeMem(p), PARAM_INVALID);                     // twice

  int32_t v = -1;
  EXPECT_EQ(AdxlEngine::GetCapability(AUTO_CONNECT, v), SUCCESS);
  EXPECT_EQ(v, FEATURE_SUPPORTED);
  EXPECT_EQ(AdxlEngine::GetCapability(static_cast<FeatureType>(-3), v), PARAM_INVALID);
  AdxlEngine e;
  EXPECT_EQ(e.Initialize("127.0.0.1", {{"adxl.Bogus", "1"}}), PARAM_INVALID);
  EXPECT_EQ(e.Initialize("127.0.0.1", {{OPTION_BUFFER_POOL, "lots"}}), PARAM_INVALID);
}

// Two adxl engines in one process, both with MallocMem memory; async reads
// with many requests in flight; memory freed while registered stays valid
// for the transfers until deregistered.
TEST(AdxlTest, TwoEnginesInOneProcess) {
  constexpr size_t kLen = 512 * 1024;
  constexpr size_t kOps = 64;
  AdxlEngine server;
  std::string name;
  Status st = FAILED;
  for (int port = 20000 + (getpid() % 20000), tries = 0; st != SUCCESS && tries < 50; ++port, ++tries) {
    name = "127.0.0.1:" + std::to_string(port);
    st = server.Initialize(name.c_str(), {{OPTION_AUTO_CONNECT, "1"}});
  }
  ASSERT_EQ(st, SUCCESS);
  Mem smem(kLen);
  FillHixlPattern(smem.bytes(), kLen, 10);
  MemHandle sh = nullptr;
  ASSERT_EQ(server.RegisterMem({smem.at(0), kLen}, MEM_HOST, sh), SUCCESS);

  AdxlEngine client;
  ASSERT_EQ(client.Initialize("127.0.0.1", {{OPTION_AUTO_CONNECT, "1"}}), SUCCESS);
  void* cmem = nullptr;
  ASSERT_EQ(AdxlEngine::MallocMem(MEM_HOST, kLen, &cmem), SUCCESS);
  MemHandle ch = nullptr;
  ASSERT_EQ(client.RegisterMem({reinterpret_cast<uintptr_t>(cmem), kLen}, MEM_HOST, ch), SUCCESS);
  ASSERT_EQ(AdxlEngine::FreeMem(cmem), SUCCESS);  // still registered: still mapped
  // Auto connect: no Connect call. Op i reads remote slot i into local slot kOps-1-i.
  const size_t slot = kLen / kOps;
  std::vector<TransferReq> reqs(kOps);
  for (size_t i = 0; i < kOps; ++i)
    ASSERT_EQ(client.TransferAsync(name.c_str(), READ,
                                   {{reinterpret_cast<uintptr_t>(cmem) + (kOps - 1 - i) * slot, smem.at(i * slot), slot}},
                                   TransferArgs{}, reqs[i]),
              SUCCESS);
  for (size_t i = 0; i < kOps; ++i) ASSERT_EQ(WaitFor(client, reqs[i]), TransferStatus::COMPLETED) << i;
  for (size_t i = 0; i < kOps; ++i)
    ASSERT_EQ(FirstPatternMismatch(static_cast<uint8_t*>(cmem) + (kOps - 1 - i) * slot, slot, 10, i * slot), -1) << i;
  EXPECT_EQ(client.DeregisterMem(ch), SUCCESS);
  client.Finalize();
  EXPECT_EQ(server.DeregisterMem(sh), SUCCESS);
  server.Finalize();
}

}  // namespace
