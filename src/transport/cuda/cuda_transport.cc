#include "transport/cuda/cuda_transport.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>

#include "common/logging.h"
#include "common/random.h"
#include "common/wire.h"
#include "gpu/device_memory.h"
#include "transport/cuda/cuda_endpoint.h"
#include "net/unix_channel.h"

namespace lldd {
namespace {
constexpr const char* kInfoMagic = "cuda_ipc/1";
constexpr int kOfferLifetimeMs = 10000;
}  // namespace

CudaTransport::CudaTransport(GpuApi* api) : api_(api != nullptr ? *api : Gpu()) {}

CudaTransport::~CudaTransport() { Stop(); }

std::unique_ptr<Transport> MakeCudaTransport() { return std::make_unique<CudaTransport>(); }

TransportCaps CudaTransport::caps() const {
  TransportCaps caps;
  caps.any_host = false;
  caps.local_memory = kAnyMemory;
  // The peer's user host memory cannot be reached from here (fallback).
  caps.remote_memory = kDeviceMemory | kHostAllocated;
  caps.needs_peer_thread = false;
  return caps;
}

Result CudaTransport::Start(const TransportConfig& config, RegionTable& regions, size_t slot) {
  (void)slot;
  regions_ = &regions;
  device_ = config.device_id < 0 ? 0 : config.device_id;
  // kDevice caches become GPU memory (memory/allocator.h), or the log says
  // once that they stay host memory.
  if (&api_ == &Gpu()) InstallGpuMemoryProvider();
  std::string why;
  if (!api_.Available(&why)) return Result::FeatureNotEnabled(Msg("no usable GPU: ", why));
  if (device_ >= api_.DeviceCount())
    return Result::ParamInvalid(Msg("OPTION_DEVICE_ID ", config.device_id, " names no GPU (", api_.DeviceCount(),
                                    " visible)"));
  copier_ = std::make_unique<GpuCopier>(api_, device_);
  socket_name_ = MakeAbstractName() + "/cuda";
  LDD_RETURN_IF_ERROR(UnixListen(socket_name_, &listener_));
  stopping_ = false;
  ticket_thread_ = std::thread([this] { ServeTickets(); });
  return Result::Ok();
}

void CudaTransport::Stop() {
  stopping_ = true;
  listener_.Shutdown();
  if (ticket_thread_.joinable()) ticket_thread_.join();
  listener_.Close();
  DropOffers(true);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [base, len] : registered_) (void)api_.HostUnregister(reinterpret_cast<void*>(base));
  registered_.clear();
  local_.clear();
}

Result CudaTransport::LocalInfo(std::vector<uint8_t>* info) const {
  std::string why;
  if (!api_.Available(&why)) return Result::FeatureNotEnabled(Msg("no GPU path: ", why));
  if (!listener_.valid()) return Result::FeatureNotEnabled("the cuda_ipc transport is not started");
  WireWriter w;
  w.Str(kInfoMagic);
  w.Str(HostIdentity());
  w.Str(socket_name_);
  *info = std::move(w.buffer());
  return Result::Ok();
}

Result CudaTransport::CanReach(const std::vector<uint8_t>& peer_info) const {
  std::vector<uint8_t> mine;
  LDD_RETURN_IF_ERROR(LocalInfo(&mine));
  WireReader r(peer_info);
  std::string magic = r.Str(), host = r.Str(), socket = r.Str();
  if (!r.done() || magic != kInfoMagic) return Result::ParamInvalid("malformed cuda_ipc connection info");
  if (host != HostIdentity()) return Result::FeatureNotEnabled("the peer is on another host (or namespace)");
  return Result::Ok();
}

Result CudaTransport::Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                              std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) {
  (void)deadline;
  LDD_RETURN_IF_ERROR(CanReach(peer_info));
  WireReader r(peer_info);
  r.Str();
  r.Str();
  std::string socket = r.Str();
  *out = std::make_shared<CudaEndpoint>(*this, link, std::move(fallback), socket);
  return Result::Ok();
}

Result CudaTransport::OnRegionAdded(Region& region) {
  LocalRegion l;
  l.length = region.length;
  l.kind = region.kind;
  if (region.allocation != nullptr) {
    l.allocation = region.allocation.get();
    l.alloc_base = region.allocation->data();
    l.alloc_size = region.allocation->size();
  }
  if (region.kind == kDeviceMemory) {
    GpuPointerInfo info;
    if (api_.PointerInfo(region.base, &info).ok() && info.device) l.device = info.device_id;
  }
  std::lock_guard<std::mutex> lock(mu_);
  local_[reinterpret_cast<uintptr_t>(region.base)] = l;
  return Result::Ok();
}

void CudaTransport::OnRegionRemoved(Region& region) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = local_.find(reinterpret_cast<uintptr_t>(region.base));
  if (it == local_.end()) return;
  LocalRegion gone = it->second;
  local_.erase(it);
  if (gone.kind == kDeviceMemory) return;
  uintptr_t pinned = gone.allocation != nullptr ? reinterpret_cast<uintptr_t>(gone.alloc_base)
                                                : reinterpret_cast<uintptr_t>(region.base);
  auto reg = registered_.find(pinned);
  if (reg == registered_.end()) return;
  if (gone.allocation != nullptr)
    for (auto& [base, l] : local_)
      if (l.allocation == gone.allocation) return;  // another region of it still lives
  (void)api_.HostUnregister(reinterpret_cast<void*>(pinned));
  registered_.erase(reg);
}

bool CudaTransport::PrepareLocal(const uint8_t* p, uint64_t length, bool* device, uintptr_t* lo, uintptr_t* hi) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  *lo = a;
  *hi = a + length;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = local_.upper_bound(a);
    if (it != local_.begin()) {
      --it;
      const LocalRegion& l = it->second;
      if (a - it->first <= l.length && length <= l.length - (a - it->first)) {
        *lo = it->first;
        *hi = it->first + l.length;
        *device = l.kind == kDeviceMemory;
        if (*device) return ReachDevice(l.device, l.allocation != nullptr);
        uintptr_t base = l.allocation != nullptr ? reinterpret_cast<uintptr_t>(l.alloc_base) : it->first;
        uint64_t size = l.allocation != nullptr ? l.alloc_size : l.length;
        if (registered_.count(base) != 0) return true;
        // Once per region (or allocation): about 0.2 ms per MiB.
        Result r = api_.HostRegister(reinterpret_cast<void*>(base), size);
        if (!r.ok()) {
          LDD_LOG(Warn) << "cuda_ipc: cannot register host memory with CUDA (" << r.message()
                        << "); it goes by the fallback path";
          return false;
        }
        registered_[base] = size;
        return true;
      }
    }
  }
  GpuPointerInfo info;
  if (api_.PointerInfo(p, &info).ok() && info.device) {
    *device = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!ReachDevice(info.device_id, false)) return false;
    }
    if (info.size != 0 && a >= info.base && a + length <= info.base + info.size) {
      *lo = info.base;
      *hi = info.base + info.size;
    }
    return true;
  }
  return false;
}

bool CudaTransport::CoversAllocation(uintptr_t base, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  uintptr_t covered = base;  // [base, covered) is registered
  for (auto it = local_.lower_bound(base); it != local_.end() && it->first <= covered; ++it)
    covered = std::max<uintptr_t>(covered, it->first + it->second.length);
  return covered - base >= size;
}

bool CudaTransport::ReachDevice(int device, bool vmm) {
  if (device < 0 || device == device_) return true;
  Result r = vmm ? Result::FeatureNotEnabled("VMM memory is mapped for its own GPU only") : api_.EnablePeerAccess(device_, device);
  if (r.ok()) return true;
  if (unreachable_devices_.insert(device).second)
    LDD_LOG(Warn) << "cuda_ipc copies with GPU " << device_ << ", which cannot reach memory on GPU " << device << " ("
                  << r.message() << "); that memory goes by the fallback path";
  return false;
}

std::string CudaTransport::OfferFds(const std::vector<int>& fds) {
  uint8_t nonce[16];
  FillRandom(nonce, sizeof(nonce));
  std::string ticket;
  for (uint8_t b : nonce) ticket += Msg(std::hex, (b >> 4), (b & 15));
  Offer offer;
  for (int fd : fds) offer.fds.push_back(::dup(fd));
  offer.expires = std::chrono::steady_clock::now() + std::chrono::milliseconds(kOfferLifetimeMs);
  DropOffers(false);
  std::lock_guard<std::mutex> lock(mu_);
  offers_[ticket] = std::move(offer);
  return ticket;
}

void CudaTransport::DropOffers(bool all) {
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  for (auto it = offers_.begin(); it != offers_.end();) {
    if (all || it->second.expires < now) {
      for (int fd : it->second.fds) ::close(fd);
      it = offers_.erase(it);
    } else {
      ++it;
    }
  }
}

void CudaTransport::ServeTickets() {
  struct Waiting {
    Socket conn;
    std::chrono::steady_clock::time_point until;
  };
  std::deque<Waiting> waiting;  // oldest first
  std::vector<pollfd> fds;
  while (!stopping_) {
    fds.assign(1, pollfd{listener_.fd(), POLLIN, 0});
    for (const Waiting& w : waiting) fds.push_back(pollfd{w.conn.fd(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
    if (stopping_) break;
    const auto now = std::chrono::steady_clock::now();
    std::deque<Waiting> still;
    for (size_t i = 0; i < waiting.size(); ++i) {
      const short ev = fds[i + 1].revents;
      if ((ev & POLLIN) != 0) {
        ServeTicket(waiting[i].conn);  // answered or not, done with it
      } else if ((ev & (POLLHUP | POLLERR | POLLNVAL)) == 0 && waiting[i].until > now) {
        still.push_back(std::move(waiting[i]));
      }
    }
    waiting.swap(still);
    if ((fds[0].revents & POLLIN) == 0) continue;
    for (;;) {  // every connection queued at the listener
      Socket conn(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!conn.valid()) break;
      if (waiting.size() >= kMaxTicketConnections) waiting.pop_front();
      waiting.push_back({std::move(conn), now + std::chrono::milliseconds(kTicketWaitMs)});
    }
  }
}

void CudaTransport::ServeTicket(const Socket& conn) {
  std::vector<uint8_t> ticket;
  std::vector<int> junk;
  Result got = UnixRecv(conn.fd(), &ticket, &junk, Deadline::AfterMillis(0));
  for (int fd : junk) ::close(fd);
  if (!got.ok()) return;
  Offer offer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = offers_.find(std::string(ticket.begin(), ticket.end()));
    if (it != offers_.end()) {
      offer = std::move(it->second);
      offers_.erase(it);
    }
  }
  WireWriter w;
  w.U32(static_cast<uint32_t>(offer.fds.size()));
  (void)UnixSend(conn.fd(), w.buffer(), offer.fds, Deadline::AfterMillis(kTicketWaitMs));
  for (int fd : offer.fds) ::close(fd);
}

}  // namespace lldd
