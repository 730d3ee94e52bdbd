// The same-host endpoint against a hostile peer: the test plays the other
// end of the shm channel (a socketpair) and answers MAP requests itself.
#include "transport/shm/shm_endpoint.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <thread>

#include "net/unix_channel.h"

namespace lldd {
namespace {

class ShmEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer_ = fds[1];
    endpoint_ = std::make_unique<ShmEndpoint>(regions_, nullptr, 9, 1);
    endpoint_->AttachChannel(std::make_shared<Socket>(fds[0]));
    runner_ = std::thread([this] { endpoint_->Run(); });
  }
  void TearDown() override {
    endpoint_->Close();
    ::close(peer_);
    runner_.join();
  }

  // Prepare(region) while the test answers the MAP request with `answer`
  // and `fds` (which it then closes).
  Result PrepareAnsweredWith(uint64_t region, const ShmMapAnswer& answer, const std::vector<int>& fds) {
    auto prepared = std::async(std::launch::async,
                               [&] { return endpoint_->Prepare({region}, Deadline::AfterMillis(10000)); });
    std::vector<uint8_t> message;
    std::vector<int> received;
    Result r = UnixRecv(peer_, &message, &received, Deadline::AfterMillis(10000));
    EXPECT_TRUE(r.ok()) << r.message();
    ShmHeader h;
    std::vector<uint8_t> meta;
    EXPECT_TRUE(DecodeShmMessage(message, &h, &meta).ok());
    EXPECT_EQ(h.type, ShmMsg::kMap);
    r = UnixSend(peer_, EncodeShmMessage(ShmMsg::kMapResp, h.request_id, 0, EncodeShmMapAnswer(answer)), fds,
                 Deadline::AfterMillis(10000));
    EXPECT_TRUE(r.ok()) << r.message();
    for (int fd : fds) ::close(fd);
    return prepared.get();
  }

  static ShmRegionEntry Memfd(uint64_t region, uint64_t length, uint64_t memfd_size) {
    return {region, ShmAccess::kMemfd, 0, region, 0, length, memfd_size};
  }
  static ShmRegionEntry Attach(uint64_t region, const void* address, uint64_t length) {
    return {region, ShmAccess::kCrossMemoryAttach, 0, 0, reinterpret_cast<uint64_t>(address), length, 0};
  }

  RegionTable regions_;
  std::unique_ptr<ShmEndpoint> endpoint_;
  std::thread runner_;
  int peer_ = -1;
};

uint8_t g_target[64];

TEST_F(ShmEndpointTest, CrossMemoryAttachOnlyIntoThePeerItself) {
  // The channel's peer is this process: naming it is fine.
  EXPECT_TRUE(PrepareAnsweredWith(1, {getpid(), {Attach(1, g_target, sizeof(g_target))}}, {}).ok());
  // Naming another process would make every later pull read, and every
  // push write, that process's memory at an address of the peer's choosing.
  Result r = PrepareAnsweredWith(2, {getppid(), {Attach(2, g_target, sizeof(g_target))}}, {});
  EXPECT_EQ(r.code(), llm_datadist::LLM_LINK_FAILED) << r.message();
  r = PrepareAnsweredWith(3, {1, {Attach(3, g_target, sizeof(g_target))}}, {});
  EXPECT_EQ(r.code(), llm_datadist::LLM_LINK_FAILED) << r.message();
}

TEST_F(ShmEndpointTest, SealedMemfdOfTheClaimedSizeIsMappedAndCopied) {
  std::unique_ptr<SharedMemory> mine;
  ASSERT_TRUE(SharedMemory::Create(4096, "test", &mine).ok());
  std::memset(mine->data(), 0x5A, 4096);
  ASSERT_TRUE(PrepareAnsweredWith(1, {getpid(), {Memfd(1, 4096, 4096)}}, {::dup(mine->fd())}).ok());
  std::vector<uint8_t> got(100);
  ASSERT_TRUE(endpoint_->Read({{got.data(), 1, 3996, 100}}, Deadline::AfterMillis(10000)).ok());
  EXPECT_EQ(got, std::vector<uint8_t>(100, 0x5A));
}

TEST_F(ShmEndpointTest, MemfdSmallerThanClaimedIsRefused) {
  std::unique_ptr<SharedMemory> mine;
  ASSERT_TRUE(SharedMemory::Create(4096, "test", &mine).ok());
  // Mapped as 1 MiB, a copy at 512 KiB would raise SIGBUS here.
  Result r = PrepareAnsweredWith(1, {getpid(), {Memfd(1, 1 << 20, 1 << 20)}}, {::dup(mine->fd())});
  EXPECT_FALSE(r.ok());
}

TEST_F(ShmEndpointTest, UnsealedMemfdIsRefused) {
  // Its owner could shrink it under our mapping at any time.
  int fd = memfd_create("unsealed", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  Result r = PrepareAnsweredWith(1, {getpid(), {Memfd(1, 4096, 4096)}}, {fd});
  EXPECT_FALSE(r.ok());
}

TEST_F(ShmEndpointTest, DescriptorThatIsNoMemfdIsRefused) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ::close(pipe_fds[1]);
  Result r = PrepareAnsweredWith(1, {getpid(), {Memfd(1, 4096, 4096)}}, {pipe_fds[0]});
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace lldd
