// The same-host data path: chosen automatically, forced, refused across
// namespaces, revoked, denied cross-memory attach, and clean after peers die.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>

#include "llm_datadist/llm_datadist.h"
#include "netns.h"
#include "test_peer.h"
#include "tests/wait_until.h"

using namespace llm_datadist;
using lldd_test::ClientOptions;
using lldd_test::ClusterAt;
using lldd_test::ForkedServer;
using lldd_test::Int32Desc;
using lldd_test::Pattern;

namespace {

constexpr uint64_t kServerId = 61;
constexpr uint64_t kClientId = 62;

bool RowMatches(const Cache& c, uint32_t t, uint64_t row, int64_t seed, uint32_t st, uint64_t srow) {
  return lldd_test::RowHolds(c, t, row, 16, seed, st, srow);
}

size_t Mappings() { return lldd_test::ResourceCounts::Now().mappings; }

std::unique_ptr<LlmDataDist> LinkedClient(uint16_t port, const char* backend, Status* link_status,
                                          const char* ip = "127.0.0.1") {
  auto client = std::make_unique<LlmDataDist>(kClientId, LlmRole::kDecoder);
  EXPECT_EQ(client->Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, backend}})), LLM_SUCCESS);
  std::vector<Status> rets;
  *link_status = client->LinkLlmClusters({ClusterAt(kServerId, port, ip)}, rets, 3000);
  return client;
}

TEST(Shm, AutoChoosesSharedMemoryOnOneHost) {
  ForkedServer server(kServerId);
  const int64_t remote = server.AllocateInt32(2, 8, 16, 5);
  Status st;
  auto client = LinkedClient(server.port(), "auto", &st);
  ASSERT_EQ(st, LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  EXPECT_STREQ(client->GetLinkTransport(kServerId), "shm");
  Cache local;
  ASSERT_EQ(client->AllocateCache(Int32Desc(2, 8, 16), local), LLM_SUCCESS);
  ASSERT_EQ(client->PullKvBlocks(CacheIndex{kServerId, remote}, local, {7, 1}, {0, 3}), LLM_SUCCESS);
  EXPECT_TRUE(RowMatches(local, 1, 0, 5, 1, 7));
  EXPECT_TRUE(RowMatches(local, 0, 3, 5, 0, 1));
}

TEST(Shm, ForcedShmAgainstForcedTcpFailsTheLink) {
  ForkedServer server(kServerId, {{OPTION_TRANSFER_BACKEND, "tcp"}});
  Status st;
  auto client = LinkedClient(server.port(), "shm", &st);
  EXPECT_EQ(st, LLM_LINK_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("forces 'shm'"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
}

TEST(Shm, ForcedShmAcrossNetworkNamespacesFailsCleanly) {
  lldd_test::NetnsPeerHost host;
  if (!host.unavailable().empty()) GTEST_SKIP() << host.unavailable();
  ForkedServer server(kServerId, {{lldd_test::kNetnsOption, host.name()},
                                  {OPTION_LISTEN_IP_INFO, host.peer_ip() + ":0"}});
  const int64_t remote = server.RegisterInt32(2, 8, 16, 6);
  Status st;
  auto forced = LinkedClient(server.port(), "shm", &st, host.peer_ip().c_str());
  EXPECT_EQ(st, LLM_LINK_FAILED);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("namespace"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  forced.reset();
  // The same pair with "auto" links over TCP and moves the bytes.
  auto client = LinkedClient(server.port(), "auto", &st, host.peer_ip().c_str());
  ASSERT_EQ(st, LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  EXPECT_STREQ(client->GetLinkTransport(kServerId), "tcp");
  Cache local;
  ASSERT_EQ(client->AllocateCache(Int32Desc(2, 8, 16), local), LLM_SUCCESS);
  ASSERT_EQ(client->PullKvCache(CacheIndex{kServerId, remote, 4}, local, 2), LLM_SUCCESS)
      << LlmDataDist::GetLastErrorMessage();
  EXPECT_TRUE(RowMatches(local, 1, 2, 6, 1, 4));
}

TEST(Shm, DeallocateRevokesTheMappingBeforeItReturns) {
  ForkedServer server(kServerId);
  const int64_t remote = server.AllocateInt32(2, 8, 16, 7);
  Status st;
  auto client = LinkedClient(server.port(), "shm", &st);
  ASSERT_EQ(st, LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  Cache local;
  ASSERT_EQ(client->AllocateCache(Int32Desc(2, 8, 16), local), LLM_SUCCESS);
  const size_t own_mappings = Mappings();
  ASSERT_EQ(client->PullKvBlocks(CacheIndex{kServerId, remote}, local, {1}, {1}), LLM_SUCCESS);
  EXPECT_EQ(Mappings(), own_mappings + 1) << "the peer's cache is mapped once";
  ASSERT_EQ(server.Command("dealloc " + std::to_string(remote)), "ok");
  // The server's DeallocateCache returned only after we dropped the mapping.
  EXPECT_EQ(Mappings(), own_mappings);
  EXPECT_EQ(client->PullKvBlocks(CacheIndex{kServerId, remote}, local, {2}, {2}), LLM_KV_CACHE_NOT_EXIST);
  EXPECT_TRUE(RowMatches(local, 0, 1, 7, 0, 1));
  const auto* row2 = reinterpret_cast<const int32_t*>(local.tensor_addrs[0]) + 2 * 16;
  EXPECT_EQ(row2[0], 0) << "a revoked cache was read";
}

// A peer reaches user memory we registered by cross-memory attach, which
// nothing on our side can stop. If that peer does not confirm a revocation
// (here: it is frozen), UnregisterKvCache must not report success, or the
// caller would free memory the peer may still write: it says LLM_TIMEOUT,
// and the link to that peer is closed.
TEST(Shm, UnconfirmedRevocationOfUserMemoryIsNotSuccess) {
  ForkedServer server(kServerId);
  const int64_t theirs = server.RegisterInt32(1, 8, 16, 0);
  ASSERT_GT(theirs, 0);
  Status st;
  auto client = LinkedClient(server.port(), "shm", &st);
  ASSERT_EQ(st, LLM_SUCCESS) << LlmDataDist::GetLastErrorMessage();
  std::vector<int32_t> mine(8 * 16, 0);
  lldd_test::FillPattern({reinterpret_cast<uintptr_t>(mine.data())}, 8, 16, 5);
  int64_t id = -1;
  ASSERT_EQ(client->RegisterKvCache(Int32Desc(1, 8, 16), {reinterpret_cast<uint64_t>(mine.data())}, RegisterCfg{}, id),
            LLM_SUCCESS);
  // The peer pulls from us: it now reaches our memory directly.
  ASSERT_EQ(server.Command("pull " + std::to_string(kClientId) + " " + std::to_string(id) + " " +
                           std::to_string(theirs)),
            "0x0");
  server.Freeze();
  EXPECT_EQ(client->UnregisterKvCache(id), LLM_TIMEOUT);
  EXPECT_NE(std::string(LlmDataDist::GetLastErrorMessage()).find("did not confirm"), std::string::npos)
      << LlmDataDist::GetLastErrorMessage();
  Cache local;
  ASSERT_EQ(client->AllocateCache(Int32Desc(1, 8, 16), local), LLM_SUCCESS);
  EXPECT_EQ(client->PullKvCache(CacheIndex{kServerId, theirs}, local), LLM_LINK_FAILED) << "the link stayed up";
  server.Thaw();
  EXPECT_EQ(server.Stop(), 0);
}

// Runs in a child whose kernel interface refuses cross-memory attach.
void DenyCrossMemoryAttach() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_readv, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_writev, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) _exit(2);
}

TEST(Shm, DeniedCrossMemoryAttachFallsBackToTcp) {
  ForkedServer server(kServerId);
  const int64_t registered = server.RegisterInt32(2, 8, 16, 8);
  const int64_t allocated = server.AllocateInt32(2, 8, 16, 9);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    DenyCrossMemoryAttach();
    Status st;
    auto client = LinkedClient(server.port(), "shm", &st);
    Cache local;
    bool ok = st == LLM_SUCCESS && client->AllocateCache(Int32Desc(2, 8, 16), local) == LLM_SUCCESS &&
              client->PullKvBlocks(CacheIndex{kServerId, registered}, local, {3, 4}, {0, 1}) == LLM_SUCCESS &&
              client->PullKvCache(CacheIndex{kServerId, allocated, 5}, local, 7) == LLM_SUCCESS &&
              RowMatches(local, 1, 0, 8, 1, 3) && RowMatches(local, 0, 1, 8, 0, 4) && RowMatches(local, 1, 7, 9, 1, 5) &&
              std::string(client->GetLinkTransport(kServerId)) == "shm";
    client.reset();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the client could not pull with cross-memory attach denied";
}

TEST(Shm, DeadPeersLeaveNoMappingDescriptorOrThread) {
  auto client = std::make_unique<LlmDataDist>(kClientId, LlmRole::kDecoder);
  ASSERT_EQ(client->Initialize(ClientOptions({{OPTION_TRANSFER_BACKEND, "shm"}})), LLM_SUCCESS);
  Cache local;
  ASSERT_EQ(client->AllocateCache(Int32Desc(2, 8, 16), local), LLM_SUCCESS);
  auto cycle = [&](int i) {
    ForkedServer server(kServerId);
    const int64_t allocated = server.AllocateInt32(2, 8, 16, 10);
    const int64_t registered = server.RegisterInt32(2, 8, 16, 11);
    std::vector<Status> rets;
    ASSERT_EQ(client->LinkLlmClusters({ClusterAt(kServerId, server.port())}, rets, 5000), LLM_SUCCESS)
        << "cycle " << i << ": " << LlmDataDist::GetLastErrorMessage();
    ASSERT_EQ(client->PullKvBlocks(CacheIndex{kServerId, allocated}, local, {1}, {1}), LLM_SUCCESS);
    ASSERT_EQ(client->PullKvBlocks(CacheIndex{kServerId, registered}, local, {2}, {2}), LLM_SUCCESS);
    server.Kill();
    Status st = client->PullKvBlocks(CacheIndex{kServerId, registered}, local, {2}, {2});
    EXPECT_NE(st, LLM_SUCCESS);
    ASSERT_EQ(client->UnlinkLlmClusters({ClusterAt(kServerId, server.port())}, rets, 1000, true), LLM_SUCCESS);
  };
  cycle(0);  // warm-up: lazily started helpers exist from here on
  usleep(200000);
  const lldd_test::ResourceCounts before = lldd_test::ResourceCounts::Now();
  // Any per-cycle leak shows after a few dozen cycles; a sanitizer's slow
  // process start (the peer is a fresh program each time) sets the count.
  const int cycles = lldd_test::kSanitized ? 50 : 200;
  for (int i = 1; i <= cycles; ++i) {
    cycle(i);
    if (HasFatalFailure()) return;
  }
  // Threads of the last link end asynchronously; give them a moment.
  lldd_test::ResourceCounts after = lldd_test::ResourceCounts::Now();
  for (int i = 0; i < 150 && (after.fds > before.fds || after.threads > before.threads); ++i) {
    usleep(20000);
    after = lldd_test::ResourceCounts::Now();
  }
  EXPECT_EQ(after.fds, before.fds);
  EXPECT_EQ(after.mappings, before.mappings);
  EXPECT_LE(after.threads, before.threads);
  EXPECT_TRUE(RowMatches(local, 0, 1, 10, 0, 1));
}

}  // namespace
