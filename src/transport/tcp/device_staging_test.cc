#include "transport/tcp/device_staging.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "gpu/fake_gpu_api.h"

namespace lldd {
namespace {

class DeviceStagingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dev = static_cast<uint8_t*>(api.Malloc(1 << 20));
    for (int i = 0; i < (1 << 20); ++i) dev[i] = static_cast<uint8_t>(i * 7 + 1);
    for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<uint8_t>(i * 5 + 2);
  }
  void TearDown() override { api.Free(dev); }

  // Host and GPU ranges interleaved, some longer than a slab.
  std::vector<StagedRange> Ranges() {
    return {{dev + 100, 3000, true}, {dev + 50000, 9000, true}, {host.data(), 700, false},
            {host.data() + 1000, 10, false}, {dev + 200000, 5000, true}, {dev + 300000, 1, true}};
  }

  FakeGpuApi api;
  GpuCopier copier{api, 0};
  StagingConfig config{4096, 3};
  uint8_t* dev = nullptr;
  std::vector<uint8_t> host = std::vector<uint8_t>(4096);
};

TEST_F(DeviceStagingTest, ProduceSendsEveryByteInOrderAndGathersAhead) {
  DeviceStager stager(api, copier, config);
  std::vector<uint8_t> wire;
  std::vector<int> launches_at_sink;
  Result r = stager.Produce(
      Ranges(),
      [&](const std::vector<iovec>& iovs) {
        launches_at_sink.push_back(api.launches);
        for (const iovec& v : iovs) {
          auto* p = static_cast<uint8_t*>(v.iov_base);
          wire.insert(wire.end(), p, p + v.iov_len);
        }
        return Result::Ok();
      },
      Deadline::AfterMillis(5000));
  ASSERT_TRUE(r.ok()) << r.message();
  std::vector<uint8_t> expected;
  for (const StagedRange& s : Ranges()) expected.insert(expected.end(), s.addr, s.addr + s.length);
  EXPECT_EQ(wire, expected);
  // 12000 GPU bytes before the host ranges (3 slabs of 4096), 5001 after (2).
  EXPECT_EQ(api.launches.load(), 5);
  ASSERT_FALSE(launches_at_sink.empty());
  EXPECT_EQ(launches_at_sink[0], 3);  // three slabs gathered before the first send
}

TEST_F(DeviceStagingTest, ConsumeFillsEveryRangeInOrder) {
  DeviceStager stager(api, copier, config);
  std::vector<StagedRange> ranges = Ranges();
  uint64_t total = 0;
  for (const StagedRange& s : ranges) total += s.length;
  std::vector<uint8_t> wire(total);
  std::mt19937 rng(3);
  for (uint8_t& b : wire) b = static_cast<uint8_t>(rng());
  size_t at = 0;
  Result r = stager.Consume(
      ranges,
      [&](const std::vector<iovec>& iovs) {
        for (const iovec& v : iovs) {
          std::memcpy(v.iov_base, wire.data() + at, v.iov_len);
          at += v.iov_len;
        }
        return Result::Ok();
      },
      Deadline::AfterMillis(5000));
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(at, total);
  at = 0;
  for (const StagedRange& s : ranges) {
    ASSERT_EQ(std::memcmp(s.addr, wire.data() + at, s.length), 0);
    at += s.length;
  }
}

TEST_F(DeviceStagingTest, AStuckGpuTimesOutWithinTheDeadline) {
  DeviceStager stager(api, copier, config);
  api.Stall(true);
  auto start = std::chrono::steady_clock::now();
  Result r = stager.Produce(Ranges(), [](const std::vector<iovec>&) { return Result::Ok(); },
                            Deadline::AfterMillis(100));
  EXPECT_EQ(r.code(), llm_datadist::LLM_TIMEOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  api.Stall(false);
}

// Staging slabs are reused from call to call, but never while a copy that
// timed out (and was retired, still running on the GPU) may use them: the
// next call takes fresh ones (issue 22).
TEST_F(DeviceStagingTest, SlabsAStuckCopyStillUsesAreNotReused) {
  const StagingConfig slabs{5120, 3};  // a size nothing else here allocates
  api.pinned_size_counted = slabs.slab_bytes;
  DeviceStager stager(api, copier, slabs);
  auto ignore = [](const std::vector<iovec>&) { return Result::Ok(); };
  ASSERT_TRUE(stager.Produce(Ranges(), ignore, Deadline::AfterMillis(5000)).ok());
  ASSERT_TRUE(stager.Produce(Ranges(), ignore, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(api.pinned_allocs_of_size.load(), slabs.slabs);  // reused
  api.Stall(true);
  EXPECT_EQ(stager.Produce(Ranges(), ignore, Deadline::AfterMillis(50)).code(), llm_datadist::LLM_TIMEOUT);
  EXPECT_EQ(api.pinned_allocs_of_size.load(), slabs.slabs);
  // The timed-out gathers still hold the slabs: this call must not write them.
  EXPECT_EQ(stager.Produce(Ranges(), ignore, Deadline::AfterMillis(50)).code(), llm_datadist::LLM_TIMEOUT);
  EXPECT_EQ(api.pinned_allocs_of_size.load(), 2 * slabs.slabs);
  api.Stall(false);
}

// Stands in for TCP: moves bytes between local host memory and "remote"
// regions, and refuses GPU addresses as sendmsg would (EFAULT).
class HostOnlyEndpoint final : public Endpoint {
 public:
  HostOnlyEndpoint(FakeGpuApi& api) : api_(api) {}
  std::map<uint64_t, std::vector<uint8_t>> remote;
  int calls = 0;
  const char* name() const override { return "tcp"; }
  Result Read(const std::vector<IoOp>& ops, Deadline d) override { return Move(ops, false, d); }
  Result Write(const std::vector<IoOp>& ops, Deadline d) override { return Move(ops, true, d); }
  void Close() override {}

 private:
  Result Move(const std::vector<IoOp>& ops, bool write, Deadline) {
    ++calls;
    for (const IoOp& op : ops) {
      GpuPointerInfo info;
      EXPECT_TRUE(api_.PointerInfo(op.local, &info).ok());
      if (info.device) return Result::Failed("EFAULT: GPU memory given to a socket");
      uint8_t* far = remote.at(op.region_id).data() + op.remote_offset;
      if (write)
        std::memcpy(far, op.local, op.length);
      else
        std::memcpy(op.local, far, op.length);
    }
    return Result::Ok();
  }
  FakeGpuApi& api_;
};

TEST_F(DeviceStagingTest, StagingEndpointPullsAndPushesGpuMemoryThroughAHostOnlyPath) {
  auto inner = std::make_shared<HostOnlyEndpoint>(api);
  inner->remote[1] = std::vector<uint8_t>(64 << 10);
  inner->remote[2] = std::vector<uint8_t>(64 << 10);
  for (auto& [id, bytes] : inner->remote)
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * id + 9);
  auto ep = WrapWithDeviceStaging(inner, api, 0, config);
  std::mt19937 rng(11);
  std::vector<IoOp> ops;
  std::vector<uint8_t> local_host(2048);
  for (int i = 0; i < 40; ++i) {
    uint64_t len = 1 + rng() % 3000;
    ops.push_back({dev + i * 5000, 1 + rng() % 2, rng() % (60 << 10), len});
  }
  ops.push_back({local_host.data(), 2, 100, 2048});  // host memory passes straight through
  ASSERT_TRUE(ep->Read(ops, Deadline::AfterMillis(5000)).ok());
  for (const IoOp& op : ops)
    ASSERT_EQ(std::memcmp(op.local, inner->remote[op.region_id].data() + op.remote_offset, op.length), 0);
  EXPECT_GT(inner->calls, 2);  // several windows

  // Push: GPU bytes land in the remote regions.
  for (int i = 0; i < 20000; ++i) dev[i] = static_cast<uint8_t>(i ^ 0x5A);
  std::vector<IoOp> push = {{dev, 1, 0, 10000}, {dev + 10000, 2, 30000, 10000}};
  ASSERT_TRUE(ep->Write(push, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(std::memcmp(inner->remote[1].data(), dev, 10000), 0);
  EXPECT_EQ(std::memcmp(inner->remote[2].data() + 30000, dev + 10000, 10000), 0);
}

TEST_F(DeviceStagingTest, HostOnlyTransfersAreForwardedUntouched) {
  auto inner = std::make_shared<HostOnlyEndpoint>(api);
  inner->remote[1] = std::vector<uint8_t>(4096, 3);
  auto ep = WrapWithDeviceStaging(inner, api, 0, config);
  ASSERT_TRUE(ep->Read({{host.data(), 1, 0, 4096}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(inner->calls, 1);
  EXPECT_EQ(api.launches.load(), 0);
  EXPECT_EQ(host[4095], 3);
}

}  // namespace
}  // namespace lldd
