// The cuda_ipc transport between two instances in one process, on the fake
// GPU: descriptors cross a real Unix socket, VMM fds and IPC handles are
// memfds mapped a second time, so both sides see distinct addresses.
#include "transport/cuda/cuda_transport.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "gpu/device_memory.h"
#include "gpu/fake_gpu_api.h"
#include "memory/shared_memory.h"
#include "net/unix_channel.h"
#include "transport/cuda/cuda_endpoint.h"
#include "common/wire.h"
#include "transport/cuda/cuda_ipc_pair.h"

namespace lldd {
namespace {

class FakeLink final : public LinkHandle {
 public:
  std::weak_ptr<Endpoint> peer;
  bool is_closed = false;
  std::function<void(std::vector<uint8_t>*)> tamper;  // a hostile peer rewrites its reply
  uint64_t remote_cluster_id() const override { return 1; }
  bool initiator() const override { return true; }
  uint64_t link_id() const override { return 42; }
  uint64_t link_secret() const override { return 4242; }
  Result CallPeer(const std::string& transport, const std::vector<uint8_t>& request, Deadline,
                  std::vector<uint8_t>* reply) override {
    EXPECT_EQ(transport, "cuda_ipc");
    auto p = peer.lock();
    if (p == nullptr) return Result::LinkFailed("peer gone");
    Result r = p->OnPeerCall(request, reply);
    if (r.ok() && tamper) tamper(reply);
    return r;
  }
  Result DialJoin(const std::string&, const std::vector<uint8_t>&, Deadline, std::shared_ptr<Socket>*) override {
    return Result::LinkFailed("no joins here");
  }
  void TrackSocket(const std::shared_ptr<Socket>&) override {}
  size_t TrackedSockets() const override { return 0; }
  void Spawn(std::function<void()> fn) override { std::thread(std::move(fn)).detach(); }
  bool closed() const override { return is_closed; }
};

// Records what the cuda path handed to its fallback.
class RecordingEndpoint final : public Endpoint {
 public:
  std::vector<IoOp> reads;
  const char* name() const override { return "tcp"; }
  Result Read(const std::vector<IoOp>& ops, Deadline) override {
    reads.insert(reads.end(), ops.begin(), ops.end());
    return Result::Ok();
  }
  Result Write(const std::vector<IoOp>&, Deadline) override { return Result::Ok(); }
  void Close() override {}
};

struct Side {
  explicit Side(GpuApi& api) : transport(&api) {
    regions.SetHooks([this](Region& r) { return transport.OnRegionAdded(r); },
                     [this](Region& r) { transport.OnRegionRemoved(r); });
  }
  RegionTable regions;
  CudaTransport transport;
  std::shared_ptr<FakeLink> link = std::make_shared<FakeLink>();
  std::shared_ptr<Endpoint> endpoint;
};

class CudaTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    provider = MakeGpuMemoryProvider(api);
    TransportConfig config;
    ASSERT_TRUE(owner.transport.Start(config, owner.regions, 0).ok());
    ASSERT_TRUE(puller.transport.Start(config, puller.regions, 0).ok());
    std::vector<uint8_t> owner_info, puller_info;
    ASSERT_TRUE(owner.transport.LocalInfo(&owner_info).ok());
    ASSERT_TRUE(puller.transport.LocalInfo(&puller_info).ok());
    ASSERT_TRUE(owner.transport.Connect(owner.link, puller_info, nullptr, Deadline::AfterMillis(1000), &owner.endpoint)
                    .ok());
    ASSERT_TRUE(
        puller.transport.Connect(puller.link, owner_info, fallback, Deadline::AfterMillis(1000), &puller.endpoint).ok());
    owner.link->peer = puller.endpoint;
    puller.link->peer = owner.endpoint;
  }
  void TearDown() override {
    puller.endpoint->Close();
    owner.endpoint->Close();
  }

  // A device allocation on `side` holding `regions` regions of `bytes` each.
  std::vector<uint64_t> AddDeviceCache(Side& side, int regions, uint64_t bytes, uint8_t seed,
                                       std::vector<uint8_t*>* bases) {
    std::shared_ptr<Allocation> a;
    EXPECT_TRUE(provider->Allocate(bytes * regions, 0, &a).ok());
    std::vector<uint64_t> ids;
    for (int i = 0; i < regions; ++i) {
      uint8_t* base = a->data() + i * bytes;
      for (uint64_t b = 0; b < bytes; ++b) base[b] = static_cast<uint8_t>(seed + b * 13 + i);
      uint64_t id = 0;
      EXPECT_TRUE(side.regions.Add(base, bytes, kDeviceMemory, a, i * bytes, &id).ok());
      ids.push_back(id);
      if (bases != nullptr) bases->push_back(base);
    }
    return ids;
  }

  FakeGpuApi api;
  std::shared_ptr<DeviceMemoryProvider> provider;
  std::shared_ptr<RecordingEndpoint> fallback = std::make_shared<RecordingEndpoint>();
  Side owner{api};
  Side puller{api};
};

TEST_F(CudaTransportTest, PullsScatteredBlocksWithOneLaunchAndOpensEachAllocationOnce) {
  constexpr uint64_t kBytes = 256 << 10, kBlock = 4096;
  std::vector<uint8_t*> remote, local;
  auto remote_ids = AddDeviceCache(owner, 2, kBytes, 1, &remote);
  AddDeviceCache(puller, 1, 2 * kBytes, 0, &local);
  std::memset(local[0], 0, 2 * kBytes);
  std::mt19937 rng(7);
  std::vector<IoOp> ops;
  for (uint64_t i = 0; i < 2 * kBytes / kBlock; ++i) {
    uint64_t r = rng() % 2, block = rng() % (kBytes / kBlock);
    ops.push_back({local[0] + i * kBlock, remote_ids[r], block * kBlock, kBlock});
  }
  int launches = api.launches;
  ASSERT_TRUE(puller.endpoint->Read(ops, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(api.launches - launches, 1);
  EXPECT_EQ(api.vmm_imports.load(), 1);  // two regions, one allocation
  for (const IoOp& op : ops) {
    uint8_t* src = remote[op.region_id == remote_ids[0] ? 0 : 1] + op.remote_offset;
    ASSERT_EQ(std::memcmp(op.local, src, op.length), 0);
  }
  // Push back, into the owner's memory.
  std::memset(local[0], 0x5A, kBlock);
  ASSERT_TRUE(puller.endpoint->Write({{local[0], remote_ids[1], 8 * kBlock, kBlock}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(remote[1][8 * kBlock], 0x5A);
  EXPECT_EQ(remote[1][9 * kBlock - 1], 0x5A);
  EXPECT_EQ(api.vmm_imports.load(), 1);
  EXPECT_TRUE(fallback->reads.empty());
}

TEST_F(CudaTransportTest, OutOfRangeAndUnknownRegionsAreRefused) {
  auto ids = AddDeviceCache(owner, 1, 4096, 1, nullptr);
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 4096, 0, &local);
  EXPECT_EQ(puller.endpoint->Read({{local[0], ids[0], 4000, 200}}, Deadline::AfterMillis(1000)).code(),
            llm_datadist::LLM_PARAM_INVALID);
  EXPECT_EQ(puller.endpoint->Read({{local[0], ids[0] + 100, 0, 10}}, Deadline::AfterMillis(1000)).code(),
            llm_datadist::LLM_KV_CACHE_NOT_EXIST);
}

TEST_F(CudaTransportTest, UserGpuMemoryIsSharedByLegacyIpc) {
  auto* user = static_cast<uint8_t*>(api.Malloc(1 << 20));
  for (int i = 0; i < (1 << 20); ++i) user[i] = static_cast<uint8_t>(i * 31);
  // The cudaMalloc block registered wholly, as two regions.
  ASSERT_NE(owner.regions.Add(user + 65536, (1 << 20) - 65536, kDeviceMemory), 0U);
  uint64_t id = owner.regions.Add(user, 65536, kDeviceMemory);
  ASSERT_NE(id, 0U);
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 65536, 0, &local);
  ASSERT_TRUE(puller.endpoint->Read({{local[0], id, 0, 65536}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(std::memcmp(local[0], user, 65536), 0);
  EXPECT_EQ(api.ipc_opens.load(), 1);
  owner.regions.Remove({id}, [&] { ASSERT_TRUE(owner.endpoint->Revoke({id}, Deadline::AfterMillis(5000)).ok()); });
  EXPECT_EQ(api.ipc_closes.load(), 1);
  api.Free(user);
}

// A region inside a cudaMalloc block that holds unregistered memory too (a
// caching allocator's segment) is not shared by IPC, whose handle would open
// the whole block to the peer: it goes by the fallback path.
TEST_F(CudaTransportTest, PartOfAGpuAllocationIsNotSharedByIpc) {
  auto* user = static_cast<uint8_t*>(api.Malloc(1 << 20));
  uint64_t id = owner.regions.Add(user + 65536, 65536, kDeviceMemory);
  ASSERT_NE(id, 0U);
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 65536, 0, &local);
  ASSERT_TRUE(puller.endpoint->Read({{local[0], id, 0, 65536}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(api.ipc_opens.load(), 0);
  ASSERT_EQ(fallback->reads.size(), 1U);
  EXPECT_EQ(fallback->reads[0].region_id, id);
  owner.regions.Remove({id}, [&] { ASSERT_TRUE(owner.endpoint->Revoke({id}, Deadline::AfterMillis(5000)).ok()); });
  api.Free(user);
}

// A describe reply claiming a larger allocation than the handle opens (the
// region placed past its end) is refused when the mapping is opened, before
// any kernel could reach past it.
TEST_F(CudaTransportTest, PeerClaimingMoreThanItsIpcAllocationIsRefused) {
  auto* user = static_cast<uint8_t*>(api.Malloc(1 << 20));
  uint64_t id = owner.regions.Add(user, 1 << 20, kDeviceMemory);
  ASSERT_NE(id, 0U);
  puller.link->tamper = [](std::vector<uint8_t>* reply) {
    WireReader r(*reply);
    WireWriter w;
    uint32_t n = r.U32();
    w.U32(n);
    for (uint32_t i = 0; i < n; ++i) {
      w.U64(r.U64());
      w.U8(r.U8());
      w.U64(r.U64());
      w.Str(r.Str());
      uint64_t size = r.U64();
      r.U64();
      w.U64(size + (1 << 20));  // claims twice the allocation
      w.U64(size);              // and puts the region past its end
      for (int b = 0; b < 64; ++b) w.U8(r.U8());
      w.I32(r.I32());
    }
    w.Str(r.Str());
    ASSERT_TRUE(r.done());
    *reply = std::move(w.buffer());
  };
  Result r = puller.endpoint->Prepare({id}, Deadline::AfterMillis(5000));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.message().find("mapping opened"), std::string::npos) << r.message();
  EXPECT_EQ(api.ipc_closes.load(), api.ipc_opens.load()) << "the refused mapping stays open";
  puller.link->tamper = nullptr;
  owner.regions.Remove({id}, [&] { ASSERT_TRUE(owner.endpoint->Revoke({id}, Deadline::AfterMillis(5000)).ok()); });
  api.Free(user);
}

TEST_F(CudaTransportTest, HostCacheOfThePeerIsMappedAndRegisteredOnce) {
  std::unique_ptr<SharedMemory> shm;
  ASSERT_TRUE(SharedMemory::Create(1 << 20, "test", &shm).ok());
  std::shared_ptr<Allocation> host(std::move(shm));
  for (int i = 0; i < (1 << 20); ++i) host->data()[i] = static_cast<uint8_t>(i * 3 + 1);
  uint64_t id = 0;
  ASSERT_TRUE(owner.regions.Add(host->data(), 1 << 20, kHostAllocated, host, 0, &id).ok());
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 1 << 20, 0, &local);
  int registers = api.host_registers;
  ASSERT_TRUE(puller.endpoint->Read({{local[0], id, 4096, 8192}}, Deadline::AfterMillis(5000)).ok());
  ASSERT_TRUE(puller.endpoint->Read({{local[0] + 8192, id, 0, 4096}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(std::memcmp(local[0], host->data() + 4096, 8192), 0);
  EXPECT_EQ(std::memcmp(local[0] + 8192, host->data(), 4096), 0);
  EXPECT_EQ(api.host_registers - registers, 1);
}

// The peer's memfd is owned by its mapping once mapped: the descriptor is
// closed once, when the import ends, never a second time under a number
// that some other file has taken meanwhile.
TEST_F(CudaTransportTest, APeersHostCacheDescriptorIsClosedOnceByItsOwner) {
  std::unique_ptr<SharedMemory> shm;
  ASSERT_TRUE(SharedMemory::Create(1 << 20, "test", &shm).ok());
  std::shared_ptr<Allocation> host(std::move(shm));
  uint64_t id = 0;
  ASSERT_TRUE(owner.regions.Add(host->data(), 1 << 20, kHostAllocated, host, 0, &id).ok());
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 1 << 20, 0, &local);
  ASSERT_TRUE(puller.endpoint->Read({{local[0], id, 0, 4096}}, Deadline::AfterMillis(5000)).ok());
  // A file opened now takes the lowest free number: the one a second close
  // of the received descriptor would hit.
  int bystander = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(bystander, 0);
  owner.regions.Remove({id}, [&] { ASSERT_TRUE(owner.endpoint->Revoke({id}, Deadline::AfterMillis(5000)).ok()); });
  EXPECT_EQ(static_cast<CudaEndpoint*>(puller.endpoint.get())->open_imports(), 0U);
  EXPECT_NE(::fcntl(bystander, F_GETFD), -1) << "another file's descriptor was closed";
  ::close(bystander);
}

// A copy that outlives even its drain (a hung GPU) keeps the caller's local
// memory leased: the region cannot be removed (and freed) under it.
TEST_F(CudaTransportTest, AStuckCopyKeepsTheLocalRegionLeasedUntilItEnds) {
  auto ids = AddDeviceCache(owner, 1, 65536, 1, nullptr);
  std::vector<uint8_t*> local;
  auto local_ids = AddDeviceCache(puller, 1, 65536, 0, &local);
  std::memset(local[0], 0, 65536);
  ASSERT_TRUE(puller.endpoint->Prepare(ids, Deadline::AfterMillis(5000)).ok());
  auto lease = std::make_shared<RegionLease>();
  ASSERT_TRUE(puller.regions.Acquire(local_ids, lease.get()).ok());
  api.Stall(true);
  uint64_t copied = api.runs_copied;
  Result r = puller.endpoint->ReadHolding({{local[0], ids[0], 0, 65536}}, Deadline::AfterMillis(50), lease);
  EXPECT_EQ(r.code(), llm_datadist::LLM_TIMEOUT) << r.message();
  lease.reset();  // the caller is done with it; the retired copy is not
  std::atomic<bool> removed{false};
  std::thread remover([&] {
    puller.regions.Remove(local_ids);
    removed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(removed.load()) << "the region was removed while a GPU copy into it could still run";
  api.Stall(false);
  remover.join();
  EXPECT_TRUE(removed.load());
  // When the copy finally ran, it had been cancelled: nothing was written
  // (the region's memory is gone now; the fake counts what its kernel did).
  EXPECT_EQ(api.runs_copied.load(), copied);
  EXPECT_GT(api.runs_cancelled.load(), 0U);
}

TEST_F(CudaTransportTest, LocalHostMemoryIsRegisteredLazilyOnceAndReleasedWithItsRegion) {
  auto ids = AddDeviceCache(owner, 1, 65536, 9, nullptr);
  std::vector<uint8_t> user(65536 + 4096);
  uint8_t* buf = user.data();
  uint64_t local_id = puller.regions.Add(buf, 65536, kHostRegistered);
  ASSERT_TRUE(puller.endpoint->Read({{buf, ids[0], 0, 32768}}, Deadline::AfterMillis(5000)).ok());
  ASSERT_TRUE(puller.endpoint->Read({{buf + 32768, ids[0], 32768, 32768}}, Deadline::AfterMillis(5000)).ok());
  EXPECT_EQ(api.host_registers.load(), 1);
  EXPECT_EQ(buf[1], static_cast<uint8_t>(9 + 13));
  puller.regions.Remove({local_id});
  EXPECT_EQ(api.host_unregisters.load(), 1);
}

TEST_F(CudaTransportTest, PeerUserHostMemoryGoesToTheFallback) {
  std::vector<uint8_t> remote(4096, 7);
  uint64_t id = owner.regions.Add(remote.data(), remote.size(), kHostRegistered);
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 4096, 0, &local);
  ASSERT_TRUE(puller.endpoint->Read({{local[0], id, 0, 4096}}, Deadline::AfterMillis(5000)).ok());
  ASSERT_EQ(fallback->reads.size(), 1U);
  EXPECT_EQ(fallback->reads[0].region_id, id);
}

TEST_F(CudaTransportTest, RevocationClosesImportsAndLaterPullsSeeTheCacheGone) {
  auto ids = AddDeviceCache(owner, 2, 65536, 1, nullptr);
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 65536, 0, &local);
  ASSERT_TRUE(puller.endpoint->Read({{local[0], ids[0], 0, 4096}, {local[0] + 4096, ids[1], 0, 4096}},
                                    Deadline::AfterMillis(5000))
                  .ok());
  auto* ep = static_cast<CudaEndpoint*>(puller.endpoint.get());
  EXPECT_EQ(ep->open_imports(), 1U);
  // One region of two: the allocation stays open.
  owner.regions.Remove({ids[0]}, [&] { ASSERT_TRUE(owner.endpoint->Revoke({ids[0]}, Deadline::AfterMillis(5000)).ok()); });
  EXPECT_EQ(ep->open_imports(), 1U);
  EXPECT_EQ(puller.endpoint->Read({{local[0], ids[0], 0, 4096}}, Deadline::AfterMillis(5000)).code(),
            llm_datadist::LLM_KV_CACHE_NOT_EXIST);
  int unmaps = api.vmm_unmaps;
  owner.regions.Remove({ids[1]}, [&] { ASSERT_TRUE(owner.endpoint->Revoke({ids[1]}, Deadline::AfterMillis(5000)).ok()); });
  EXPECT_EQ(ep->open_imports(), 0U);
  EXPECT_EQ(api.vmm_unmaps - unmaps, 2);  // our import, and the owner's allocation itself
}

TEST_F(CudaTransportTest, StuckStreamTimesOutAndRevocationWaitsForIt) {
  auto ids = AddDeviceCache(owner, 1, 65536, 1, nullptr);
  std::vector<uint8_t*> local;
  AddDeviceCache(puller, 1, 65536, 0, &local);
  ASSERT_TRUE(puller.endpoint->Prepare(ids, Deadline::AfterMillis(5000)).ok());
  api.Stall(true);
  auto start = std::chrono::steady_clock::now();
  Result r = puller.endpoint->Read({{local[0], ids[0], 0, 65536}}, Deadline::AfterMillis(100));
  EXPECT_EQ(r.code(), llm_datadist::LLM_TIMEOUT) << r.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  // The stuck copy still holds the import: the revocation waits until it ends.
  std::thread unstall([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    api.Stall(false);
  });
  int unmaps = api.vmm_unmaps;
  auto revoke_start = std::chrono::steady_clock::now();
  owner.regions.Remove({ids[0]}, [&] { ASSERT_TRUE(owner.endpoint->Revoke(ids, Deadline::AfterMillis(5000)).ok()); });
  EXPECT_GE(std::chrono::steady_clock::now() - revoke_start, std::chrono::milliseconds(150));
  EXPECT_EQ(static_cast<CudaEndpoint*>(puller.endpoint.get())->open_imports(), 0U);
  EXPECT_EQ(api.vmm_unmaps - unmaps, 2);  // our import, and the owner's allocation itself
  unstall.join();
}

TEST_F(CudaTransportTest, OtherHostsAndMalformedInfoAreRefused) {
  std::vector<uint8_t> info;
  ASSERT_TRUE(owner.transport.LocalInfo(&info).ok());
  EXPECT_TRUE(puller.transport.CanReach(info).ok());
  std::vector<uint8_t> truncated(info.begin(), info.end() - 3);
  EXPECT_FALSE(puller.transport.CanReach(truncated).ok());
  std::string text(info.begin(), info.end());
  auto pos = text.find('/');
  ASSERT_NE(pos, std::string::npos);
  info[pos + 2] ^= 1;  // a different boot id
  EXPECT_FALSE(puller.transport.CanReach(info).ok());
  EXPECT_EQ(puller.transport.caps().any_host, false);
  EXPECT_NE(puller.transport.caps().remote_memory & kDeviceMemory, 0U);
}

// Any local process can open the ticket socket. Connections that never
// send a ticket (more of them than the server keeps waiting) must not hold
// up a linked peer's ticket: it is served while they wait (each used to
// hold the only serving thread for up to a second).
TEST_F(CudaTransportTest, SilentTicketConnectionsDoNotDelayAPeer) {
  std::vector<Socket> silent(CudaTransport::kMaxTicketConnections + 8);
  for (Socket& s : silent)
    ASSERT_TRUE(UnixConnect(owner.transport.socket_name(), Deadline::AfterMillis(1000), &s).ok());
  std::vector<uint8_t*> remote, local;
  auto ids = AddDeviceCache(owner, 1, 4096, 3, &remote);
  AddDeviceCache(puller, 1, 4096, 0, &local);
  // Far less than the silent connections would take one after another.
  Result r = puller.endpoint->Read({{local[0], ids[0], 0, 4096}}, Deadline::AfterMillis(3000));
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(std::memcmp(local[0], remote[0], 4096), 0);
  EXPECT_EQ(api.vmm_imports.load(), 1);
}

size_t OpenDescriptors() {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n += e.path().filename() != ".";
  return n;
}

// Descriptor accounting: pulling a peer's GPU (VMM fd) and host (memfd)
// caches, revoking them and dropping everything leaves exactly the
// descriptors there were before; and a descriptor opened meanwhile (which
// may reuse a number the transport let go) stays open throughout.
TEST_F(CudaTransportTest, DescriptorsBalanceAcrossPullsAndRevocations) {
  const size_t before = OpenDescriptors();
  {
    std::unique_ptr<SharedMemory> shm;
    ASSERT_TRUE(SharedMemory::Create(1 << 16, "test", &shm).ok());
    std::shared_ptr<Allocation> host(std::move(shm));
    std::memset(host->data(), 0x3C, 1 << 16);
    uint64_t host_id = 0;
    ASSERT_TRUE(owner.regions.Add(host->data(), 1 << 16, kHostAllocated, host, 0, &host_id).ok());
    auto device_ids = AddDeviceCache(owner, 1, 1 << 16, 4, nullptr);
    std::vector<uint8_t*> local;
    auto local_ids = AddDeviceCache(puller, 1, 2 << 16, 0, &local);
    ASSERT_TRUE(puller.endpoint
                    ->Read({{local[0], host_id, 0, 1 << 16}, {local[0] + (1 << 16), device_ids[0], 0, 1 << 16}},
                           Deadline::AfterMillis(5000))
                    .ok());
    EXPECT_EQ(local[0][0], 0x3C);
    int witness[2];
    ASSERT_EQ(::pipe(witness), 0);
    for (uint64_t id : {host_id, device_ids[0]})
      owner.regions.Remove({id}, [&] { ASSERT_TRUE(owner.endpoint->Revoke({id}, Deadline::AfterMillis(5000)).ok()); });
    puller.regions.Remove(local_ids);
    EXPECT_NE(::fcntl(witness[0], F_GETFD), -1) << "a descriptor of ours was closed by the transport";
    EXPECT_NE(::fcntl(witness[1], F_GETFD), -1) << "a descriptor of ours was closed by the transport";
    ::close(witness[0]);
    ::close(witness[1]);
  }
  // The owner's ticket thread closes its copies of the descriptors just
  // after sending them, so the puller may finish first: wait for that.
  for (int i = 0; i < 5000 && OpenDescriptors() != before; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(OpenDescriptors(), before);
}

TEST(CudaTransportNoGpu, OffersNothingWithoutAGpu) {
  FakeGpuApi none(0);
  RegionTable regions;
  CudaTransport transport(&none);
  EXPECT_EQ(transport.Start(TransportConfig{}, regions, 0).code(), llm_datadist::LLM_FEATURE_NOT_ENABLED);
  std::vector<uint8_t> info;
  EXPECT_EQ(transport.LocalInfo(&info).code(), llm_datadist::LLM_FEATURE_NOT_ENABLED);
  transport.Stop();
}

}  // namespace
}  // namespace lldd

namespace lldd {
namespace {

// Two real processes (fork: the fake GPU has no state a fork breaks).
TEST(CudaIpcCrossProcess, PullsAndPushesAnotherProcesssGpuCache) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(sv[0]);
    FakeGpuApi api;
    Result r = ServeCudaIpcOwner(api, sv[1], 2, 1 << 20);
    _exit(r.ok() ? 0 : 1);
  }
  ::close(sv[1]);
  {
    FakeGpuApi api;
    CudaIpcPuller puller(api);
    Result r = puller.Open(sv[0]);
    ASSERT_TRUE(r.ok()) << r.message();
    auto* local = static_cast<uint8_t*>(api.Malloc(1 << 20));
    std::vector<IoOp> ops;
    std::mt19937 rng(1);
    for (uint64_t i = 0; i < 256; ++i)
      ops.push_back({local + i * 4096, puller.remote_regions()[i % 2], (rng() % 256) * 4096, 4096});
    r = puller.endpoint().Read(ops, Deadline::AfterMillis(10000));
    ASSERT_TRUE(r.ok()) << r.message();
    for (const IoOp& op : ops) {
      uint64_t region = op.region_id == puller.remote_regions()[0] ? 0 : 1;
      for (uint64_t b = 0; b < op.length; b += 511)
        ASSERT_EQ(op.local[b], PairPattern(region, op.remote_offset + b));
    }
    EXPECT_EQ(api.vmm_imports.load(), 1);
    EXPECT_EQ(api.launches.load(), 1);
    // Push, then pull back what was pushed.
    std::memset(local, 0xC3, 8192);
    ASSERT_TRUE(puller.endpoint().Write({{local, puller.remote_regions()[1], 40960, 8192}}, Deadline::AfterMillis(10000)).ok());
    std::memset(local, 0, 8192);
    ASSERT_TRUE(puller.endpoint().Read({{local, puller.remote_regions()[1], 40960, 8192}}, Deadline::AfterMillis(10000)).ok());
    EXPECT_EQ(local[0], 0xC3);
    EXPECT_EQ(local[8191], 0xC3);
    api.Free(local);
  }
  ::close(sv[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace lldd
