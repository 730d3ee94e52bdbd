#include "transport/cuda/cuda_ipc_pair.h"

#include <mutex>
#include <thread>

#include "common/wire.h"
#include "gpu/device_memory.h"
#include "net/unix_channel.h"

namespace lldd {
namespace {

constexpr int kCallTimeoutMs = 30000;

class PairLink final : public LinkHandle {
 public:
  explicit PairLink(int fd) : fd_(fd) {}
  uint64_t remote_cluster_id() const override { return 2; }
  bool initiator() const override { return true; }
  uint64_t link_id() const override { return 1; }
  uint64_t link_secret() const override { return 1; }
  Result CallPeer(const std::string&, const std::vector<uint8_t>& request, Deadline deadline,
                  std::vector<uint8_t>* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    LDD_RETURN_IF_ERROR(UnixSend(fd_, request, {}, deadline));
    std::vector<uint8_t> msg;
    std::vector<int> fds;
    LDD_RETURN_IF_ERROR(UnixRecv(fd_, &msg, &fds, deadline));
    WireReader r(msg);
    uint32_t code = r.U32();
    std::string text = r.Str(1 << 16);
    uint64_t n = r.U64();
    if (!r.ok() || r.left() != n) return Result::Failed("malformed reply on the pair link");
    reply->assign(msg.end() - static_cast<long>(n), msg.end());
    return code == 0 ? Result::Ok() : Result(code, text);
  }
  Result DialJoin(const std::string&, const std::vector<uint8_t>&, Deadline, std::shared_ptr<Socket>*) override {
    return Result::LinkFailed("no joins on a pair link");
  }
  void TrackSocket(const std::shared_ptr<Socket>&) override {}
  size_t TrackedSockets() const override { return 0; }
  void Spawn(std::function<void()> fn) override { std::thread(std::move(fn)).detach(); }
  bool closed() const override { return false; }

 private:
  int fd_;
  std::mutex mu_;
};

}  // namespace

Result ServeCudaIpcOwner(GpuApi& api, int fd, int count, uint64_t bytes) {
  RegionTable regions;
  CudaTransport transport(&api);
  regions.SetHooks([&](Region& r) { return transport.OnRegionAdded(r); },
                   [&](Region& r) { transport.OnRegionRemoved(r); });
  LDD_RETURN_IF_ERROR(transport.Start(TransportConfig{}, regions, 0));
  std::shared_ptr<Allocation> cache;
  LDD_RETURN_IF_ERROR(MakeGpuMemoryProvider(api)->Allocate(bytes * count, 0, &cache));
  // Fill through pinned memory, a region at a time.
  void* pinned = nullptr;
  LDD_RETURN_IF_ERROR(api.HostAllocPinned(bytes, &pinned));
  GpuCopier fill(api, 0);
  std::vector<uint64_t> ids;
  for (int r = 0; r < count; ++r) {
    auto* p = static_cast<uint8_t*>(pinned);
    for (uint64_t i = 0; i < bytes; ++i) p[i] = PairPattern(r, i);
    LDD_RETURN_IF_ERROR(fill.Run({{cache->data() + r * bytes, p, bytes}}, Deadline::AfterMillis(kCallTimeoutMs)));
    uint64_t id = 0;
    LDD_RETURN_IF_ERROR(regions.Add(cache->data() + r * bytes, bytes, kDeviceMemory, cache, r * bytes, &id));
    ids.push_back(id);
  }
  api.HostFreePinned(pinned);
  std::vector<uint8_t> info;
  LDD_RETURN_IF_ERROR(transport.LocalInfo(&info));
  WireWriter hello;
  hello.U64(bytes);
  hello.U32(static_cast<uint32_t>(ids.size()));
  for (uint64_t id : ids) hello.U64(id);
  hello.U32(static_cast<uint32_t>(info.size()));
  hello.Bytes(info.data(), info.size());
  LDD_RETURN_IF_ERROR(UnixSend(fd, hello.buffer(), {}, Deadline::AfterMillis(kCallTimeoutMs)));
  std::vector<uint8_t> peer_info;
  std::vector<int> fds;
  LDD_RETURN_IF_ERROR(UnixRecv(fd, &peer_info, &fds, Deadline::AfterMillis(kCallTimeoutMs)));
  std::shared_ptr<Endpoint> endpoint;
  LDD_RETURN_IF_ERROR(transport.Connect(std::make_shared<PairLink>(fd), peer_info, nullptr,
                                        Deadline::AfterMillis(kCallTimeoutMs), &endpoint));
  for (;;) {
    std::vector<uint8_t> request, reply;
    if (!UnixRecv(fd, &request, &fds, Deadline::Never()).ok()) break;  // the puller hung up
    Result r = endpoint->OnPeerCall(request, &reply);
    WireWriter w;
    w.U32(r.code());
    w.Str(r.message());
    w.U64(reply.size());
    w.Bytes(reply.data(), reply.size());
    if (!UnixSend(fd, w.buffer(), {}, Deadline::AfterMillis(kCallTimeoutMs)).ok()) break;
  }
  endpoint->Close();
  transport.Stop();
  return Result::Ok();
}

CudaIpcPuller::~CudaIpcPuller() {
  if (endpoint_ != nullptr) endpoint_->Close();
  transport_.Stop();
}

Result CudaIpcPuller::Open(int fd) {
  regions_.SetHooks([this](Region& r) { return transport_.OnRegionAdded(r); },
                    [this](Region& r) { transport_.OnRegionRemoved(r); });
  LDD_RETURN_IF_ERROR(transport_.Start(TransportConfig{}, regions_, 0));
  std::vector<uint8_t> hello;
  std::vector<int> fds;
  LDD_RETURN_IF_ERROR(UnixRecv(fd, &hello, &fds, Deadline::AfterMillis(120000)));
  WireReader r(hello);
  region_bytes_ = r.U64();
  uint32_t n = r.U32();
  if (!r.ok() || n > 4096) return Result::Failed("malformed hello");
  for (uint32_t i = 0; i < n; ++i) remote_.push_back(r.U64());
  uint32_t len = r.U32();
  if (!r.ok() || r.left() != len) return Result::Failed("malformed hello");
  std::vector<uint8_t> owner_info(hello.end() - len, hello.end());
  std::vector<uint8_t> info;
  LDD_RETURN_IF_ERROR(transport_.LocalInfo(&info));
  LDD_RETURN_IF_ERROR(UnixSend(fd, info, {}, Deadline::AfterMillis(kCallTimeoutMs)));
  link_ = std::make_shared<PairLink>(fd);
  return transport_.Connect(link_, owner_info, nullptr, Deadline::AfterMillis(kCallTimeoutMs), &endpoint_);
}

}  // namespace lldd
