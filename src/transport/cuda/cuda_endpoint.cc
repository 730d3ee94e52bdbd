#include "transport/cuda/cuda_endpoint.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <utility>

#include "common/logging.h"
#include "common/wire.h"
#include "memory/shared_memory.h"
#include "transport/cuda/cuda_transport.h"
#include "net/unix_channel.h"

namespace lldd {
namespace {
enum : uint8_t { kDescribe = 1, kRevoke = 2 };
constexpr size_t kMaxIdsPerCall = 64;  // at most one fd each: one Unix message

std::string Hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

// The peer's word for its allocation's size is checked against the mapping
// CUDA opened (cuMemGetAddressRange): a kernel reaching past it would kill
// this process's CUDA context.
Result CheckOpenedSize(GpuApi& api, void* opened, uint64_t claimed) {
  GpuPointerInfo info;
  Result r = api.PointerInfo(opened, &info);
  if (!r.ok()) return r;
  if (!info.device || info.base != reinterpret_cast<uint64_t>(opened) || info.size < claimed)
    return Result::Failed(Msg("the peer describes an allocation of ", claimed, " bytes; the mapping opened has ",
                              info.size));
  return Result::Ok();
}

}  // namespace

// One opened peer allocation; closed when the last region (or in-flight
// copy) holding it lets go.
struct CudaEndpoint::Import {
  GpuApi* api = nullptr;
  CudaShare share = CudaShare::kNone;
  GpuVmmBuffer vmm;
  void* ipc = nullptr;
  std::unique_ptr<SharedMemory> shm;
  bool registered = false;
  uint8_t* base = nullptr;
  uint64_t size = 0;
  // Set once the memory is really unmapped: a weak_ptr expires before the
  // destructor runs, so a revocation must wait on this, not on expiry.
  std::shared_ptr<std::atomic<bool>> released = std::make_shared<std::atomic<bool>>(false);
  ~Import() {
    switch (share) {
      case CudaShare::kVmm: api->VmmUnmap(&vmm); break;
      case CudaShare::kIpc: (void)api->IpcClose(ipc); break;
      case CudaShare::kMemfd:
        if (registered) (void)api->HostUnregister(shm->data());
        break;
      default: break;
    }
    released->store(true, std::memory_order_release);
  }
};

CudaEndpoint::CudaEndpoint(CudaTransport& transport, std::shared_ptr<LinkHandle> link,
                           std::shared_ptr<Endpoint> fallback, std::string peer_socket)
    : transport_(transport), link_(link), fallback_(std::move(fallback)), peer_socket_(std::move(peer_socket)) {}

CudaEndpoint::~CudaEndpoint() { Close(); }

size_t CudaEndpoint::open_imports() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  size_t n = 0;
  for (auto& [key, weak] : imports_) n += weak.expired() ? 0 : 1;
  return n;
}

// --- serving side: describe our regions, hand out their handles ---

Result CudaEndpoint::ServeDescribe(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) {
  WireReader r(request);
  r.U8();
  uint32_t n = r.U32();
  if (!r.ok() || n > kMaxIdsPerCall || r.left() != uint64_t{n} * 8)
    return Result::ParamInvalid("malformed cuda_ipc describe request");
  std::vector<uint64_t> ids(n);
  for (uint64_t& id : ids) id = r.U64();
  RegionLease lease;
  std::vector<Region> regions;
  LDD_RETURN_IF_ERROR(transport_.regions().Describe(ids, &lease, &regions));
  GpuApi& api = transport_.api();
  CudaDescribeReply out;
  std::vector<int> fds;
  std::map<const Allocation*, int> fd_index;
  for (const Region& region : regions) {
    CudaRegionShare& e = out.regions.emplace_back();
    e.id = region.id;
    e.length = region.length;
    const Allocation* alloc = region.allocation.get();
    if (alloc != nullptr && alloc->shareable_fd() >= 0) {
      e.share = alloc->kind() == kDeviceMemory ? CudaShare::kVmm : CudaShare::kMemfd;
      e.key = Msg("a", alloc->id(), "/", reinterpret_cast<uintptr_t>(alloc));
      e.alloc_size = alloc->size();
      e.offset = region.allocation_offset;
      auto it = fd_index.find(alloc);
      if (it == fd_index.end()) {
        it = fd_index.emplace(alloc, static_cast<int>(fds.size())).first;
        fds.push_back(alloc->shareable_fd());
      }
      e.index = it->second;
    } else if (region.kind == kDeviceMemory) {
      GpuPointerInfo info;
      Result pr = api.PointerInfo(region.base, &info);
      // Only an allocation registered wholly: the handle opens all of it.
      if (pr.ok() && info.device && info.base != 0 && info.size != 0 &&
          transport_.CoversAllocation(info.base, info.size) &&
          api.IpcGetHandle(reinterpret_cast<void*>(info.base), &e.handle).ok()) {
        e.share = CudaShare::kIpc;
        // 'i' then the handle, built without a string literal: GCC 12 at -O3
        // reports a false -Wrestrict for "i" + Hex(...).
        e.key = Hex(e.handle.data(), e.handle.size());
        e.key.insert(e.key.begin(), 'i');
        e.alloc_size = info.size;
        e.offset = reinterpret_cast<uint64_t>(region.base) - info.base;
      }
    }
  }
  out.ticket = fds.empty() ? std::string() : transport_.OfferFds(fds);
  *reply = EncodeCudaDescribeReply(out);
  return Result::Ok();
}

Result CudaEndpoint::OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) {
  if (request.empty()) return Result::ParamInvalid("empty cuda_ipc request");
  if (request[0] == kDescribe) return ServeDescribe(request, reply);
  if (request[0] == kRevoke) return ServeRevoke(request);
  return Result::ParamInvalid(Msg("unknown cuda_ipc request ", static_cast<int>(request[0])));
}

// --- requesting side ---

Result CudaEndpoint::Prepare(const std::vector<uint64_t>& region_ids, Deadline deadline) {
  std::vector<uint64_t> unknown;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (closed_) return Result::LinkFailed("cuda_ipc path closed");
    std::set<uint64_t> seen;
    for (uint64_t id : region_ids)
      if (regions_.count(id) == 0 && seen.insert(id).second) unknown.push_back(id);
  }
  auto link = link_.lock();
  if (!unknown.empty() && link == nullptr) return Result::LinkFailed("the link is gone");
  GpuApi& api = transport_.api();
  for (size_t start = 0; start < unknown.size(); start += kMaxIdsPerCall) {
    std::vector<uint64_t> chunk(unknown.begin() + start,
                                unknown.begin() + std::min(unknown.size(), start + kMaxIdsPerCall));
    std::vector<uint8_t> reply;
    LDD_RETURN_IF_ERROR(link->CallPeer(kCudaTransportName, EncodeOpWithIds(kDescribe, chunk), deadline, &reply));
    CudaDescribeReply described;
    LDD_RETURN_IF_ERROR(DecodeCudaDescribeReply(reply, chunk, &described));
    const std::vector<CudaRegionShare>& entries = described.regions;
    const std::string& ticket = described.ticket;
    // Descriptors, against the ticket, on our own Unix connection.
    std::vector<int> fds;
    if (!ticket.empty()) {
      Socket s;
      LDD_RETURN_IF_ERROR(UnixConnect(peer_socket_, deadline, &s));
      LDD_RETURN_IF_ERROR(UnixSend(s.fd(), std::vector<uint8_t>(ticket.begin(), ticket.end()), {}, deadline));
      std::vector<uint8_t> msg;
      LDD_RETURN_IF_ERROR(UnixRecv(s.fd(), &msg, &fds, deadline));
    }
    struct FdCloser {
      std::vector<int>& fds;
      ~FdCloser() {
        for (int fd : fds)
          if (fd >= 0) ::close(fd);
      }
    } closer{fds};

    std::unique_lock<std::shared_mutex> lock(mu_);
    if (closed_) return Result::LinkFailed("cuda_ipc path closed");
    for (const CudaRegionShare& e : entries) {
      RemoteRegion region;
      region.share = e.share;
      region.length = e.length;
      if (e.share != CudaShare::kNone) {
        std::shared_ptr<Import> import;
        auto it = imports_.find(e.key);
        if (it != imports_.end()) import = it->second.lock();
        if (import == nullptr || import->size < e.alloc_size) {
          import = std::make_shared<Import>();
          import->api = &api;
          import->size = e.alloc_size;
          Result ir;
          if (e.share == CudaShare::kIpc) {
            ir = api.IpcOpen(e.handle, transport_.device(), &import->ipc);
            if (ir.ok()) import->share = CudaShare::kIpc;
            import->base = static_cast<uint8_t*>(import->ipc);
            if (ir.ok()) ir = CheckOpenedSize(api, import->ipc, e.alloc_size);
          } else if (e.index < 0 || static_cast<size_t>(e.index) >= fds.size()) {
            ir = Result::Failed("the peer sent no descriptor for a shared region");
          } else if (e.share == CudaShare::kVmm) {
            ir = api.VmmImport(fds[e.index], e.alloc_size, transport_.device(), &import->vmm);
            if (ir.ok()) import->share = CudaShare::kVmm;
            import->base = static_cast<uint8_t*>(import->vmm.ptr);
          } else {
            // Map owns the descriptor from here on: not ours to close.
            ir = SharedMemory::Map(std::exchange(fds[e.index], -1), e.alloc_size, &import->shm);
            if (ir.ok()) {
              import->share = CudaShare::kMemfd;
              import->base = import->shm->data();
              ir = api.HostRegister(import->base, e.alloc_size);
              import->registered = ir.ok();
            }
          }
          if (!ir.ok()) return ir.WithContext(Msg("opening remote region ", e.id));
          imports_[e.key] = import;
        }
        region.import = import;
        region.mapped = import->base + e.offset;
      }
      regions_[e.id] = std::move(region);
    }
  }
  return Result::Ok();
}

Result CudaEndpoint::Transfer(const std::vector<IoOp>& ops, bool write, Deadline deadline,
                              std::shared_ptr<const void> hold) {
  {
    // Open what is not open yet (usually nothing: the engine prepares).
    std::vector<uint64_t> unknown;
    {
      std::shared_lock<std::shared_mutex> lock(mu_);
      uint64_t last = 0;
      bool have_last = false;
      for (const IoOp& op : ops) {
        if (have_last && op.region_id == last) continue;
        last = op.region_id;
        have_last = true;
        if (regions_.count(op.region_id) == 0) unknown.push_back(op.region_id);
      }
    }
    if (!unknown.empty()) LDD_RETURN_IF_ERROR(Prepare(unknown, deadline));
  }
  std::vector<IoOp> by_fallback;
  std::unique_ptr<GpuCopier::Job> job;
  std::shared_lock<std::shared_mutex> lock(mu_);  // a revocation waits for us
  if (closed_) return Result::LinkFailed("cuda_ipc path closed");
  std::vector<GpuCopy> copies;
  std::vector<GpuCopy> host_copies;
  std::set<const Import*> used;
  const Import* last_import = nullptr;
  std::vector<std::shared_ptr<const void>> keep;
  if (hold != nullptr) keep.push_back(std::move(hold));  // our memory, if the copy outlives us
  copies.reserve(ops.size());
  const RemoteRegion* remote = nullptr;
  uint64_t remote_id = 0;
  uintptr_t local_lo = 0, local_hi = 0;  // the local region of the last op
  bool local_device = false, local_ok = false;
  for (const IoOp& op : ops) {
    if (remote == nullptr || remote_id != op.region_id) {
      auto it = regions_.find(op.region_id);
      if (it == regions_.end())
        return Result::CacheNotExist(Msg("remote region ", op.region_id, " was revoked by its owner"));
      remote = &it->second;
      remote_id = op.region_id;
    }
    if (op.remote_offset > remote->length || op.length > remote->length - op.remote_offset)
      return Result::ParamInvalid(Msg("range [", op.remote_offset, ", +", op.length, ") lies outside remote region ",
                                      op.region_id, " of ", remote->length, " bytes"));
    uintptr_t a = reinterpret_cast<uintptr_t>(op.local);
    if (!(local_ok && a >= local_lo && a - local_lo <= local_hi - local_lo && op.length <= local_hi - a))
      local_ok = transport_.PrepareLocal(op.local, op.length, &local_device, &local_lo, &local_hi);
    if (remote->share == CudaShare::kNone || !local_ok) {
      by_fallback.push_back(op);
      continue;
    }
    uint8_t* far = remote->mapped + op.remote_offset;
    GpuCopy c = write ? GpuCopy{far, op.local, op.length} : GpuCopy{op.local, far, op.length};
    // Host memory on both sides (a memfd of the peer): the CPU copies it.
    (remote->share == CudaShare::kMemfd && !local_device ? host_copies : copies).push_back(c);
    if (remote->import.get() != last_import && used.insert(last_import = remote->import.get()).second)
      keep.push_back(remote->import);
  }
  if (!by_fallback.empty() && fallback_ == nullptr)
    return Result::FeatureNotEnabled("these ranges need a fallback path (TCP), and the link has none");
  if (!copies.empty()) LDD_RETURN_IF_ERROR(transport_.copier().Submit(copies, std::move(keep), &job));
  for (const GpuCopy& c : host_copies) std::memcpy(c.dst, c.src, c.length);
  Result fallback_result;
  if (!by_fallback.empty())
    fallback_result = write ? fallback_->Write(by_fallback, deadline) : fallback_->Read(by_fallback, deadline);
  if (job != nullptr) LDD_RETURN_IF_ERROR(transport_.copier().Wait(std::move(job), deadline));
  return fallback_result;
}

// --- revocation ---

Result CudaEndpoint::Revoke(const std::vector<uint64_t>& region_ids, Deadline deadline) {
  auto link = link_.lock();
  if (link == nullptr || link->closed()) return Result::Ok();  // the peer's imports died with it
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (closed_) return Result::Ok();
  }
  for (size_t start = 0; start < region_ids.size(); start += kMaxIdsPerCall) {
    std::vector<uint64_t> chunk(region_ids.begin() + start,
                                region_ids.begin() + std::min(region_ids.size(), start + kMaxIdsPerCall));
    std::vector<uint8_t> reply;
    LDD_RETURN_IF_ERROR(link->CallPeer(kCudaTransportName, EncodeOpWithIds(kRevoke, chunk), deadline, &reply));
  }
  return Result::Ok();
}

Result CudaEndpoint::ServeRevoke(const std::vector<uint8_t>& request) {
  WireReader r(request);
  r.U8();
  uint32_t n = r.U32();
  if (!r.ok() || n > kMaxIdsPerCall || r.left() != uint64_t{n} * 8)
    return Result::ParamInvalid("malformed cuda_ipc revoke request");
  std::vector<std::shared_ptr<Import>> revoked;
  std::vector<std::shared_ptr<std::atomic<bool>>> waiting;
  {
    std::unique_lock<std::shared_mutex> lock(mu_);  // waits for transfers in flight
    for (uint32_t i = 0; i < n; ++i) {
      auto it = regions_.find(r.U64());
      if (it == regions_.end()) continue;
      if (it->second.import != nullptr) revoked.push_back(std::move(it->second.import));
      regions_.erase(it);
    }
    // Imports still needed by another region stay open.
    std::set<const Import*> live;
    for (auto& [id, region] : regions_) live.insert(region.import.get());
    for (auto& p : revoked)
      if (live.count(p.get()) == 0) waiting.push_back(p->released);
    revoked.clear();  // closes each import no copy holds any more
    for (auto it = imports_.begin(); it != imports_.end();) it = it->second.expired() ? imports_.erase(it) : ++it;
  }
  // A copy that outlived its deadline may still hold an import: wait for it.
  Deadline until = Deadline::AfterMillis(kRevokeWaitMs);
  for (auto& released : waiting) {
    while (!released->load(std::memory_order_acquire)) {
      if (until.Expired())
        return Result::Failed("a timed-out GPU copy still uses the revoked memory; it stays mapped until it ends");
      transport_.copier().ReapStuck();
      if (released->load(std::memory_order_acquire)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return Result::Ok();
}

void CudaEndpoint::Close() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  closed_ = true;
  regions_.clear();
  imports_.clear();
}

}  // namespace lldd
