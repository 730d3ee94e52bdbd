#include "transport/tcp/device_staging.h"

#include <algorithm>

namespace lldd {

class PinnedSlabs {
 public:
  PinnedSlabs(GpuApi& api) : api_(api) {}
  ~PinnedSlabs() {
    for (void* p : slabs) api_.HostFreePinned(p);
  }
  std::vector<void*> slabs;

 private:
  GpuApi& api_;
};

// Part of a GPU range that travels in a slab.
struct StagingPiece {
  uint8_t* addr;
  uint64_t slab_offset;
  uint64_t length;
};
using Piece = StagingPiece;

namespace {
struct Window {
  bool device = false;
  std::vector<iovec> host;     // !device: straight through
  std::vector<Piece> pieces;   // device: packed into one slab
  uint64_t bytes = 0;
};

std::vector<Window> BuildWindows(const std::vector<StagedRange>& ranges, uint64_t slab) {
  std::vector<Window> windows;
  for (const StagedRange& r : ranges) {
    if (r.length == 0) continue;
    if (!r.device) {
      if (windows.empty() || windows.back().device) windows.emplace_back();
      windows.back().host.push_back({r.addr, r.length});
      windows.back().bytes += r.length;
      continue;
    }
    for (uint64_t pos = 0; pos < r.length;) {
      if (windows.empty() || !windows.back().device || windows.back().bytes == slab) {
        windows.emplace_back();
        windows.back().device = true;
      }
      Window& w = windows.back();
      uint64_t take = std::min(r.length - pos, slab - w.bytes);
      w.pieces.push_back({r.addr + pos, w.bytes, take});
      w.bytes += take;
      pos += take;
    }
  }
  return windows;
}

std::vector<GpuCopy> SlabCopies(const Window& w, uint8_t* slab, bool to_slab) {
  std::vector<GpuCopy> copies;
  copies.reserve(w.pieces.size());
  for (const Piece& p : w.pieces)
    copies.push_back(to_slab ? GpuCopy{slab + p.slab_offset, p.addr, p.length}
                             : GpuCopy{p.addr, slab + p.slab_offset, p.length});
  return copies;
}

}  // namespace

DeviceStager::DeviceStager(GpuApi& api, GpuCopier& copier, StagingConfig config)
    : api_(api), copier_(copier), config_(config) {}

DeviceStager::DeviceStager(GpuApi& api, int device, StagingConfig config)
    : api_(api), own_copier_(std::make_unique<GpuCopier>(api, device)), copier_(*own_copier_), config_(config) {}

DeviceStager::~DeviceStager() = default;

Result DeviceStager::EnsureSlabs() {
  // Slabs a retired copy still uses are its to free: take new ones.
  if (slabs_ != nullptr && slabs_.use_count() == 1) return Result::Ok();
  auto slabs = std::make_shared<PinnedSlabs>(api_);
  for (int i = 0; i < std::max(config_.slabs, 2); ++i) {
    void* p = nullptr;
    LDD_RETURN_IF_ERROR(api_.HostAllocPinned(config_.slab_bytes, &p).WithContext("staging buffer"));
    slabs->slabs.push_back(p);
  }
  slabs_ = std::move(slabs);
  return Result::Ok();
}

std::vector<std::shared_ptr<const void>> DeviceStager::Keep(std::shared_ptr<const void> hold) const {
  std::vector<std::shared_ptr<const void>> keep{slabs_};
  if (hold != nullptr) keep.push_back(std::move(hold));
  return keep;
}

Result DeviceStager::Produce(const std::vector<StagedRange>& ranges, const Pipe& sink, Deadline deadline,
                             std::shared_ptr<const void> hold) {
  std::vector<Window> windows = BuildWindows(ranges, config_.slab_bytes);
  std::vector<size_t> device;  // indices of device windows
  for (size_t i = 0; i < windows.size(); ++i)
    if (windows[i].device) device.push_back(i);
  if (!device.empty()) LDD_RETURN_IF_ERROR(EnsureSlabs());
  const size_t n = device.empty() ? 0 : slabs_->slabs.size();
  std::vector<std::unique_ptr<GpuCopier::Job>> jobs(n);
  const auto keep = Keep(std::move(hold));
  auto gather = [&](size_t d) {
    uint8_t* slab = static_cast<uint8_t*>(slabs_->slabs[d % n]);
    return copier_.Submit(SlabCopies(windows[device[d]], slab, true), keep, &jobs[d % n]);
  };
  for (size_t d = 0; d < std::min(n, device.size()); ++d) LDD_RETURN_IF_ERROR(gather(d));
  size_t d = 0;
  for (const Window& w : windows) {
    if (!w.device) {
      LDD_RETURN_IF_ERROR(sink(w.host));
      continue;
    }
    LDD_RETURN_IF_ERROR(copier_.Wait(std::move(jobs[d % n]), deadline));
    LDD_RETURN_IF_ERROR(sink({{slabs_->slabs[d % n], w.bytes}}));
    if (d + n < device.size()) LDD_RETURN_IF_ERROR(gather(d + n));
    ++d;
  }
  return Result::Ok();
}

Result DeviceStager::Consume(const std::vector<StagedRange>& ranges, const Pipe& source, Deadline deadline,
                             std::shared_ptr<const void> hold) {
  std::vector<Window> windows = BuildWindows(ranges, config_.slab_bytes);
  bool any_device = std::any_of(windows.begin(), windows.end(), [](const Window& w) { return w.device; });
  if (any_device) LDD_RETURN_IF_ERROR(EnsureSlabs());
  const size_t n = any_device ? slabs_->slabs.size() : 0;
  std::vector<std::unique_ptr<GpuCopier::Job>> jobs(n);
  const auto keep = any_device ? Keep(std::move(hold)) : std::vector<std::shared_ptr<const void>>{};
  size_t d = 0;
  for (const Window& w : windows) {
    if (!w.device) {
      LDD_RETURN_IF_ERROR(source(w.host));
      continue;
    }
    size_t s = d++ % n;
    if (jobs[s] != nullptr) LDD_RETURN_IF_ERROR(copier_.Wait(std::move(jobs[s]), deadline));
    uint8_t* slab = static_cast<uint8_t*>(slabs_->slabs[s]);
    LDD_RETURN_IF_ERROR(source({{slab, w.bytes}}));
    LDD_RETURN_IF_ERROR(copier_.Submit(SlabCopies(w, slab, false), keep, &jobs[s]));
  }
  for (size_t k = 0; k < n; ++k) {
    size_t s = (d + k) % n;  // oldest first
    if (jobs[s] != nullptr) LDD_RETURN_IF_ERROR(copier_.Wait(std::move(jobs[s]), deadline));
  }
  return Result::Ok();
}

std::vector<StagedRange> ClassifyRanges(GpuApi& api, const std::vector<iovec>& iovs) {
  std::vector<StagedRange> out;
  out.reserve(iovs.size());
  uint64_t lo = 0, hi = 0;  // last GPU allocation seen
  for (const iovec& v : iovs) {
    uint64_t a = reinterpret_cast<uint64_t>(v.iov_base);
    bool device = a >= lo && a + v.iov_len <= hi && hi != 0;
    if (!device) {
      GpuPointerInfo info;
      if (api.PointerInfo(v.iov_base, &info).ok() && info.device) {
        device = true;
        if (info.size != 0) {
          lo = info.base;
          hi = info.base + info.size;
        }
      }
    }
    out.push_back({static_cast<uint8_t*>(v.iov_base), v.iov_len, device});
  }
  return out;
}

struct DeviceStagedTransfer::Window {
  std::vector<IoOp> net;      // local = offset in the slab (rebased per call)
  std::vector<Piece> pieces;  // GPU side
  uint64_t bytes = 0;
};

namespace {

std::vector<IoOp> Rebase(const std::vector<IoOp>& net, uint8_t* slab) {
  std::vector<IoOp> out = net;
  for (IoOp& op : out) op.local = slab + reinterpret_cast<uint64_t>(op.local);
  return out;
}

std::vector<GpuCopy> PieceCopies(const std::vector<Piece>& pieces, uint8_t* slab, bool to_slab) {
  std::vector<GpuCopy> copies;
  copies.reserve(pieces.size());
  for (const Piece& p : pieces)
    copies.push_back(to_slab ? GpuCopy{slab + p.slab_offset, p.addr, p.length}
                             : GpuCopy{p.addr, slab + p.slab_offset, p.length});
  return copies;
}

std::vector<iovec> LocalIovs(const std::vector<IoOp>& ops) {
  std::vector<iovec> iovs;
  iovs.reserve(ops.size());
  for (const IoOp& op : ops) iovs.push_back({op.local, op.length});
  return iovs;
}

}  // namespace

DeviceStagedTransfer::DeviceStagedTransfer(GpuApi& api, int device, StagingConfig config)
    : api_(api), copier_(api, device), config_(config) {}

DeviceStagedTransfer::~DeviceStagedTransfer() = default;

bool DeviceStagedTransfer::AnyLocalDevice(const std::vector<IoOp>& ops) {
  std::vector<StagedRange> kinds = ClassifyRanges(api_, LocalIovs(ops));
  return std::any_of(kinds.begin(), kinds.end(), [](const StagedRange& r) { return r.device; });
}

Result DeviceStagedTransfer::Transfer(const std::vector<IoOp>& ops, bool write, Deadline deadline,
                                      const HostPath& host_path, std::shared_ptr<const void> hold) {
  std::vector<StagedRange> kinds = ClassifyRanges(api_, LocalIovs(ops));
  std::vector<IoOp> host;
  std::vector<Window> windows;
  const uint64_t slab = config_.slab_bytes;
  for (size_t i = 0; i < ops.size(); ++i) {
    const IoOp& op = ops[i];
    if (!kinds[i].device) {
      host.push_back(op);
      continue;
    }
    for (uint64_t pos = 0; pos < op.length;) {
      if (windows.empty() || windows.back().bytes == slab) windows.emplace_back();
      Window& w = windows.back();
      uint64_t take = std::min(op.length - pos, slab - w.bytes);
      w.net.push_back({reinterpret_cast<uint8_t*>(w.bytes), op.region_id, op.remote_offset + pos, take});
      w.pieces.push_back({op.local + pos, w.bytes, take});
      w.bytes += take;
      pos += take;
    }
  }
  if (windows.empty()) return host_path(ops, write, deadline);
  if (!host.empty()) LDD_RETURN_IF_ERROR(host_path(host, write, deadline));
  std::shared_ptr<PinnedSlabs> slabs;
  LDD_RETURN_IF_ERROR(TakeSlabs(&slabs));
  std::vector<std::shared_ptr<const void>> keep{slabs};
  if (hold != nullptr) keep.push_back(std::move(hold));
  Result r = write ? Push(windows, *slabs, keep, deadline, host_path) : Pull(windows, *slabs, keep, deadline, host_path);
  keep.clear();
  GiveSlabs(std::move(slabs));
  return r;
}

// Window k arrives over the network while window k-1 is scattered.
Result DeviceStagedTransfer::Pull(const std::vector<Window>& windows, const PinnedSlabs& slabs,
                                  const std::vector<std::shared_ptr<const void>>& keep, Deadline deadline,
                                  const HostPath& host) {
  const size_t n = slabs.slabs.size();
  std::vector<std::unique_ptr<GpuCopier::Job>> jobs(n);
  Result r;
  size_t k = 0;
  for (; k < windows.size() && r.ok(); ++k) {
    size_t s = k % n;
    if (jobs[s] != nullptr) r = copier_.Wait(std::move(jobs[s]), deadline);
    uint8_t* slab = static_cast<uint8_t*>(slabs.slabs[s]);
    if (r.ok()) r = host(Rebase(windows[k].net, slab), false, deadline);
    if (r.ok()) r = copier_.Submit(PieceCopies(windows[k].pieces, slab, false), keep, &jobs[s]);
  }
  for (size_t i = 0; i < n; ++i) {
    size_t s = (k + i) % n;
    if (jobs[s] != nullptr) {
      Result w = copier_.Wait(std::move(jobs[s]), deadline);
      if (r.ok()) r = w;
    }
  }
  return r;
}

// The GPU gathers up to n windows ahead of the network.
Result DeviceStagedTransfer::Push(const std::vector<Window>& windows, const PinnedSlabs& slabs,
                                  const std::vector<std::shared_ptr<const void>>& keep, Deadline deadline,
                                  const HostPath& host) {
  const size_t n = slabs.slabs.size();
  std::vector<std::unique_ptr<GpuCopier::Job>> jobs(n);
  auto gather = [&](size_t k) {
    uint8_t* slab = static_cast<uint8_t*>(slabs.slabs[k % n]);
    return copier_.Submit(PieceCopies(windows[k].pieces, slab, true), keep, &jobs[k % n]);
  };
  for (size_t k = 0; k < std::min(n, windows.size()); ++k) LDD_RETURN_IF_ERROR(gather(k));
  for (size_t k = 0; k < windows.size(); ++k) {
    size_t s = k % n;
    LDD_RETURN_IF_ERROR(copier_.Wait(std::move(jobs[s]), deadline));
    LDD_RETURN_IF_ERROR(host(Rebase(windows[k].net, static_cast<uint8_t*>(slabs.slabs[s])), true, deadline));
    if (k + n < windows.size()) LDD_RETURN_IF_ERROR(gather(k + n));
  }
  return Result::Ok();
}

Result DeviceStagedTransfer::TakeSlabs(std::shared_ptr<PinnedSlabs>* out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      *out = std::move(idle_.back());
      idle_.pop_back();
      return Result::Ok();
    }
  }
  auto slabs = std::make_shared<PinnedSlabs>(api_);
  for (int i = 0; i < std::max(config_.slabs, 2); ++i) {
    void* p = nullptr;
    LDD_RETURN_IF_ERROR(api_.HostAllocPinned(config_.slab_bytes, &p).WithContext("staging buffer"));
    slabs->slabs.push_back(p);
  }
  *out = std::move(slabs);
  return Result::Ok();
}

void DeviceStagedTransfer::GiveSlabs(std::shared_ptr<PinnedSlabs> slabs) {
  // Still referenced by a retired copy: that copy frees it when it ends.
  if (slabs.use_count() > 1) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < 4) idle_.push_back(std::move(slabs));
}

namespace {

class StagingEndpoint final : public Endpoint {
 public:
  StagingEndpoint(std::shared_ptr<Endpoint> inner, GpuApi& api, int device, StagingConfig config)
      : inner_(std::move(inner)), staged_(api, device, config) {}

  const char* name() const override { return inner_->name(); }
  Result Prepare(const std::vector<uint64_t>& ids, Deadline deadline) override { return inner_->Prepare(ids, deadline); }
  Result Revoke(const std::vector<uint64_t>& ids, Deadline deadline) override { return inner_->Revoke(ids, deadline); }
  Result OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) override {
    return inner_->OnPeerCall(request, reply);
  }
  void Close() override { inner_->Close(); }
  Result Read(const std::vector<IoOp>& ops, Deadline deadline) override { return Run(ops, false, deadline, {}); }
  Result Write(const std::vector<IoOp>& ops, Deadline deadline) override { return Run(ops, true, deadline, {}); }
  Result ReadHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) override {
    return Run(ops, false, deadline, std::move(hold));
  }
  Result WriteHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) override {
    return Run(ops, true, deadline, std::move(hold));
  }

 private:
  Result Run(const std::vector<IoOp>& ops, bool write, Deadline deadline, std::shared_ptr<const void> hold) {
    return staged_.Transfer(
        ops, write, deadline,
        [this](const std::vector<IoOp>& host, bool w, Deadline d) {
          return w ? inner_->Write(host, d) : inner_->Read(host, d);
        },
        std::move(hold));
  }
  std::shared_ptr<Endpoint> inner_;
  DeviceStagedTransfer staged_;
};

}  // namespace

std::shared_ptr<Endpoint> WrapWithDeviceStaging(std::shared_ptr<Endpoint> inner, GpuApi& api, int device,
                                                StagingConfig config) {
  return std::make_shared<StagingEndpoint>(std::move(inner), api, device, config);
}

}  // namespace lldd
