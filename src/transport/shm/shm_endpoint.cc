#include "transport/shm/shm_endpoint.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "common/logging.h"
#include "control/protocol.h"
#include "memory/parallel_copy.h"
#include "transport/shm/cross_memory.h"
#include "net/unix_channel.h"

namespace lldd {
namespace {
constexpr int kReplyTimeoutMs = 5000;

// The process at the other end of a Unix socket, as the kernel knows it.
pid_t PeerPid(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : 0;
}
}  // namespace

ShmEndpoint::ShmEndpoint(RegionTable& local_regions, std::shared_ptr<Endpoint> fallback, uint64_t peer_cluster_id,
                         unsigned copy_threads)
    : local_regions_(local_regions),
      fallback_(std::move(fallback)),
      peer_cluster_id_(peer_cluster_id),
      copy_threads_(copy_threads) {}

ShmEndpoint::~ShmEndpoint() { Close(); }

void ShmEndpoint::AttachChannel(std::shared_ptr<Socket> channel) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    channel->Shutdown();
    return;
  }
  channel_ = std::move(channel);
  cv_.notify_all();
}

bool ShmEndpoint::WaitForChannel(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_until(lock, deadline.when(), [&] { return closed_ || channel_ != nullptr; }) && !closed_;
}

Result ShmEndpoint::Send(const std::vector<uint8_t>& message, const std::vector<int>& fds, Deadline deadline) {
  std::shared_ptr<Socket> channel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    channel = channel_;
  }
  if (!channel) return Result::LinkFailed("shared-memory channel is not connected");
  std::lock_guard<std::mutex> lock(send_mu_);
  return UnixSend(channel->fd(), message, fds, deadline);
}

Result ShmEndpoint::Call(ShmMsg type, const std::vector<uint8_t>& meta, Deadline deadline, Pending* out) {
  if (!WaitForChannel(deadline)) return Result::LinkFailed("shared-memory channel is not available");
  auto pending = std::make_shared<Pending>();
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    pending_[id] = pending;
  }
  Result sent = Send(EncodeShmMessage(type, id, 0, meta), {}, deadline);
  std::unique_lock<std::mutex> lock(mu_);
  if (sent.ok()) cv_.wait_until(lock, deadline.when(), [&] { return pending->done || closed_; });
  pending_.erase(id);
  if (!sent.ok()) return sent;
  if (pending->done) {
    *out = std::move(*pending);
    return Result::Ok();
  }
  return closed_ ? Result::LinkFailed("shared-memory channel closed") : Result::Timeout("peer did not answer in time");
}

std::string ShmEndpoint::Run() {
  std::shared_ptr<Socket> channel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    channel = channel_;
  }
  std::string why = "channel missing";
  while (channel) {
    std::vector<uint8_t> message;
    std::vector<int> fds;
    Result r = UnixRecv(channel->fd(), &message, &fds, Deadline::Never());
    ShmHeader h;
    std::vector<uint8_t> meta;
    if (r.ok()) r = DecodeShmMessage(message, &h, &meta);
    if (!r.ok()) {
      for (int fd : fds) ::close(fd);
      why = r.message();
      break;
    }
    if (h.type != ShmMsg::kMapResp) {
      for (int fd : fds) ::close(fd);
      fds.clear();
    }
    uint32_t status = h.status;
    switch (h.type) {
      case ShmMsg::kMap:
        AnswerMap(h.request_id, meta);
        continue;
      case ShmMsg::kRevoke:
        ApplyRevoke(meta);
        (void)Send(EncodeShmMessage(ShmMsg::kRevokeAck, h.request_id, 0, {}), {},
                   Deadline::AfterMillis(kReplyTimeoutMs));
        continue;
      case ShmMsg::kMapResp:
        // Mappings are applied here, on the reader, before the next message
        // (possibly a revocation of the same regions) is looked at.
        if (status == 0) ApplyMap(meta, fds, &status);
        for (int fd : fds) ::close(fd);
        break;
      case ShmMsg::kRevokeAck:
        break;
      default:
        why = Msg("unexpected message type ", static_cast<int>(h.type), " on the shared-memory channel");
        channel->Shutdown();
        channel.reset();
        continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(h.request_id);
    if (it != pending_.end()) {
      it->second->done = true;
      it->second->status = status;
      it->second->meta = std::move(meta);
      cv_.notify_all();
    }
  }
  Close();
  return why;
}

void ShmEndpoint::AnswerMap(uint64_t request_id, const std::vector<uint8_t>& meta) {
  std::vector<uint64_t> ids;
  Deadline deadline = Deadline::AfterMillis(kReplyTimeoutMs);
  Result r = DecodeRegionIds(meta, &ids);
  RegionLease lease;  // keeps the memfds open until they are sent
  std::vector<Region> regions;
  if (r.ok()) r = local_regions_.Describe(ids, &lease, &regions);
  if (!r.ok()) {
    (void)Send(EncodeShmMessage(ShmMsg::kMapResp, request_id, r.code(), EncodeText(r.message())), {}, deadline);
    return;
  }
  ShmMapAnswer answer;
  answer.pid = getpid();
  std::vector<int> fds;
  std::vector<uint64_t> fd_memory_ids;
  for (const Region& region : regions) {
    ShmRegionEntry e;
    e.region_id = region.id;
    e.length = region.length;
    if (region.kind == kDeviceMemory) {
      (void)Send(EncodeShmMessage(ShmMsg::kMapResp, request_id, llm_datadist::LLM_PARAM_INVALID,
                                  EncodeText(Msg("region ", region.id, " is GPU memory, which this path cannot reach"))),
                 {}, deadline);
      return;
    }
    if (region.kind == kHostAllocated && region.allocation && region.allocation->shareable_fd() >= 0) {
      const uint64_t memory_id = region.allocation->id();
      auto it = std::find(fd_memory_ids.begin(), fd_memory_ids.end(), memory_id);
      if (it == fd_memory_ids.end() && fds.size() == kMaxFdsPerMessage) continue;  // the peer asks again
      if (it == fd_memory_ids.end()) {
        fds.push_back(region.allocation->shareable_fd());
        fd_memory_ids.push_back(memory_id);
        it = fd_memory_ids.end() - 1;
      }
      e.access = ShmAccess::kMemfd;
      e.fd_index = static_cast<uint32_t>(it - fd_memory_ids.begin());
      e.memory_id = memory_id;
      e.offset_or_address = region.allocation_offset;
      e.memfd_size = region.allocation->size();
    } else {
      e.access = ShmAccess::kCrossMemoryAttach;
      e.offset_or_address = reinterpret_cast<uint64_t>(region.base);
    }
    answer.entries.push_back(e);
  }
  (void)Send(EncodeShmMessage(ShmMsg::kMapResp, request_id, 0, EncodeShmMapAnswer(answer)), fds, deadline);
}

void ShmEndpoint::ApplyMap(const std::vector<uint8_t>& meta, std::vector<int>& fds, uint32_t* status) {
  ShmMapAnswer answer;
  if (!DecodeShmMapAnswer(meta, fds.size(), &answer).ok()) {
    *status = llm_datadist::LLM_LINK_FAILED;
    return;
  }
  // The pid names the process that cross-memory attach reads and writes: a
  // peer may only name itself, as the kernel sees it on this channel.
  pid_t verified = 0;
  {
    std::lock_guard<std::mutex> state(mu_);
    if (channel_) verified = PeerPid(channel_->fd());
  }
  if (verified <= 0 || answer.pid != verified) {
    LDD_LOG(Warn) << "cluster " << peer_cluster_id_ << " claims pid " << answer.pid << " on a channel from pid "
                  << verified << "; its memory descriptors are refused";
    *status = llm_datadist::LLM_LINK_FAILED;
    return;
  }
  std::unique_lock<std::shared_mutex> lock(map_mu_);
  peer_pid_ = answer.pid;
  std::vector<std::shared_ptr<SharedMemory>> mapped(fds.size());
  for (const ShmRegionEntry& e : answer.entries) {
    RemoteRegion region;
    region.access = e.access;
    region.length = e.length;
    if (e.access == ShmAccess::kMemfd) {
      auto& m = mapped[e.fd_index];
      if (!m) {
        auto known = memories_[e.memory_id].lock();
        if (known) {
          m = known;
        } else {
          std::unique_ptr<SharedMemory> mem;
          int fd = fds[e.fd_index];
          fds[e.fd_index] = -1;  // SharedMemory::Map owns it now
          if (!SharedMemory::Map(fd, e.memfd_size, &mem).ok()) {
            *status = llm_datadist::LLM_FAILED;
            return;
          }
          m = std::shared_ptr<SharedMemory>(std::move(mem));
          memories_[e.memory_id] = m;
        }
      }
      region.mapped = m->data() + e.offset_or_address;
      region.mapping = m;
    } else {
      region.address = e.offset_or_address;
    }
    regions_[e.region_id] = std::move(region);
  }
  // Forget memories no region uses any more.
  for (auto it = memories_.begin(); it != memories_.end();) it = it->second.expired() ? memories_.erase(it) : ++it;
  fds.erase(std::remove(fds.begin(), fds.end(), -1), fds.end());
}

void ShmEndpoint::ApplyRevoke(const std::vector<uint8_t>& meta) {
  std::vector<uint64_t> ids;
  if (!DecodeRegionIds(meta, &ids).ok()) return;
  std::unique_lock<std::shared_mutex> lock(map_mu_);  // waits for copies in flight
  for (uint64_t id : ids) regions_.erase(id);
  for (auto it = memories_.begin(); it != memories_.end();) it = it->second.expired() ? memories_.erase(it) : ++it;
}

Result ShmEndpoint::Prepare(const std::vector<uint64_t>& region_ids, Deadline deadline) {
  std::vector<uint64_t> unknown;
  {
    std::shared_lock<std::shared_mutex> lock(map_mu_);
    for (uint64_t id : region_ids)
      if (regions_.find(id) == regions_.end()) unknown.push_back(id);
  }
  for (size_t start = 0; start < unknown.size(); start += kMaxRegionsPerShmMessage) {
    std::vector<uint64_t> chunk(unknown.begin() + start,
                                unknown.begin() + std::min(unknown.size(), start + kMaxRegionsPerShmMessage));
    Pending reply;
    LDD_RETURN_IF_ERROR(Call(ShmMsg::kMap, EncodeRegionIds(chunk), deadline, &reply));
    if (reply.status != 0) return Result(reply.status, DecodeText(reply.meta));
  }
  return Result::Ok();
}

Result ShmEndpoint::Transfer(const std::vector<IoOp>& ops, bool write, Deadline deadline) {
  std::vector<IoOp> by_tcp;
  {
    std::shared_lock<std::shared_mutex> lock(map_mu_);
    {
      std::lock_guard<std::mutex> state(mu_);
      if (closed_) return Result::LinkFailed("shared-memory path closed");
    }
    std::vector<CopyTask> copies;
    std::vector<RemoteCopy> attach;
    copies.reserve(ops.size());
    const RemoteRegion* last = nullptr;
    uint64_t last_id = 0;
    for (const IoOp& op : ops) {
      if (last == nullptr || last_id != op.region_id) {
        auto it = regions_.find(op.region_id);
        if (it == regions_.end())
          return Result::CacheNotExist(Msg("remote region ", op.region_id, " was revoked by its owner"));
        last = &it->second;
        last_id = op.region_id;
      }
      if (op.remote_offset > last->length || op.length > last->length - op.remote_offset)
        return Result::ParamInvalid(Msg("range [", op.remote_offset, ", +", op.length, ") lies outside remote region ",
                                        op.region_id, " of ", last->length, " bytes"));
      if (last->access == ShmAccess::kMemfd) {
        uint8_t* remote = last->mapped + op.remote_offset;
        copies.push_back(write ? CopyTask{remote, op.local, op.length} : CopyTask{op.local, remote, op.length});
      } else if (cross_memory_allowed_) {
        attach.push_back({op.local, last->address + op.remote_offset, op.length});
      } else {
        by_tcp.push_back(op);
      }
    }
    ParallelCopy(copies, copy_threads_);
    if (!attach.empty()) {
      Result r = ParallelCrossMemoryTransfer(peer_pid_, attach, write, copy_threads_);
      if (r.code() == llm_datadist::LLM_FEATURE_NOT_ENABLED) {
        if (cross_memory_allowed_.exchange(false))
          LDD_LOG(Warn) << r.message() << "; registered memory of cluster " << peer_cluster_id_
                        << " now goes over TCP";
        for (const IoOp& op : ops) {
          auto it = regions_.find(op.region_id);
          if (it != regions_.end() && it->second.access == ShmAccess::kCrossMemoryAttach) by_tcp.push_back(op);
        }
      } else if (!r.ok()) {
        return r;
      }
    }
  }
  if (by_tcp.empty()) return Result::Ok();
  if (!fallback_) return Result::FeatureNotEnabled("cross-memory attach is denied and this link has no other data path");
  return write ? fallback_->Write(by_tcp, deadline) : fallback_->Read(by_tcp, deadline);
}

Result ShmEndpoint::Revoke(const std::vector<uint64_t>& region_ids, Deadline deadline) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || !channel_) return Result::Ok();  // nothing of ours can be mapped there
  }
  for (size_t start = 0; start < region_ids.size(); start += kMaxRegionsPerShmMessage) {
    std::vector<uint64_t> chunk(region_ids.begin() + start,
                                region_ids.begin() + std::min(region_ids.size(), start + kMaxRegionsPerShmMessage));
    Pending reply;
    LDD_RETURN_IF_ERROR(Call(ShmMsg::kRevoke, EncodeRegionIds(chunk), deadline, &reply));
  }
  return Result::Ok();
}

void ShmEndpoint::Close() {
  std::shared_ptr<Socket> channel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    channel = std::move(channel_);
    cv_.notify_all();
  }
  if (channel) channel->Shutdown();
  {
    std::unique_lock<std::shared_mutex> lock(map_mu_);  // waits for copies in flight
    regions_.clear();
    memories_.clear();
  }
  if (fallback_) fallback_->Close();
}

}  // namespace lldd
