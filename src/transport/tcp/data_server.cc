#include "transport/tcp/data_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "control/frame_io.h"
#include "control/protocol.h"
#include "transport/tcp/device_staging.h"
#include "gpu/gpu_api.h"

namespace lldd {
namespace {

constexpr int kFrameBodyTimeoutMs = 10000;
constexpr int64_t kMinServeTimeoutMs = 100;

// The connection a request is served on, as a region lease's canceller
// sees it: shut down on cancellation while the request is served, left
// alone once it is not (Disarm).
class ServingConnection {
 public:
  explicit ServingConnection(int fd) : fd_(fd) {}
  void Shutdown() {
    std::lock_guard<std::mutex> lock(mu_);
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  }
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    fd_ = -1;
  }

 private:
  std::mutex mu_;
  int fd_;
};

Result SendError(int fd, const FrameHeader& req, MsgType type, const Result& why, Deadline deadline) {
  FrameHeader h;
  h.type = type;
  h.request_id = req.request_id;
  h.status = why.code();
  return SendFrame(fd, h, EncodeText(why.message()), deadline);
}

// Reads and drops `len` bytes (the payload of a refused WRITE) so the
// connection stays in step.
Result Drain(int fd, uint64_t len, Deadline deadline) {
  std::vector<uint8_t> sink(std::min<uint64_t>(len, 1U << 20));
  while (len > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, sink.size()));
    LDD_RETURN_IF_ERROR(RecvAll(fd, sink.data(), n, deadline));
    len -= n;
  }
  return Result::Ok();
}

// The ranges of a request, when any of them is GPU memory (else empty).
std::vector<StagedRange> DeviceRanges(const std::vector<iovec>& iovs) {
  if (!Gpu().Available(nullptr)) return {};
  std::vector<StagedRange> ranges = ClassifyRanges(Gpu(), iovs);
  for (const StagedRange& r : ranges)
    if (r.device) return ranges;
  return {};
}

Result ServeOne(int fd, RegionTable& regions, const FrameHeader& h, const std::vector<uint8_t>& meta,
                int device_id, std::unique_ptr<DeviceStager>* stager) {
  const bool is_write = h.type == MsgType::kWrite;
  const MsgType resp_type = is_write ? MsgType::kWriteResp : MsgType::kReadResp;
  TransferRequest req;
  Result decoded = DecodeTransferRequest(meta, is_write ? h.data_len : UINT64_MAX, &req);
  if (!decoded.ok()) return decoded;  // malformed: the connection cannot be trusted
  // The requester stops waiting at its deadline; so do we, a little later,
  // but never later than our own cap (the u32 would allow 49 days).
  Deadline deadline = Deadline::AfterMillis(ServeTimeoutMs(req.timeout_ms));

  // Removing a region this request uses cancels it after the table's grace
  // period: the connection is shut down, so the I/O below fails at once and
  // the lease goes. A GPU copy that outlives this request may keep the lease
  // (it is shared for that) past the connection's life: by then the
  // canceller is disarmed, so it never touches a descriptor number reused.
  auto connection = std::make_shared<ServingConnection>(fd);
  auto lease = std::make_shared<RegionLease>([connection] { connection->Shutdown(); });
  struct Disarm {
    ServingConnection& c;
    ~Disarm() { c.Disarm(); }
  } disarm{*connection};
  std::vector<iovec> iovs;
  Result resolved = regions.Resolve(req.segments, lease.get(), &iovs);
  if (!resolved.ok()) {
    if (is_write) LDD_RETURN_IF_ERROR(Drain(fd, h.data_len, deadline));
    return SendError(fd, h, resp_type, resolved, deadline);
  }
  uint64_t total = 0;
  for (const auto& s : req.segments) total += s.length;
  std::vector<StagedRange> staged = DeviceRanges(iovs);
  if (!staged.empty() && !*stager) *stager = std::make_unique<DeviceStager>(Gpu(), device_id);

  FrameHeader out;
  out.type = resp_type;
  out.request_id = h.request_id;
  uint8_t head[kFrameHeaderBytes];
  if (is_write) {
    if (staged.empty()) {
      IovCursor into(std::move(iovs));
      LDD_RETURN_IF_ERROR(RecvAll(fd, into, deadline));
    } else {
      LDD_RETURN_IF_ERROR((*stager)->Consume(
          staged, [&](const std::vector<iovec>& v) { IovCursor c(v); return RecvAll(fd, c, deadline); }, deadline,
          lease));
    }
    lease.reset();
    EncodeFrameHeader(out, head);
    return SendAll(fd, head, sizeof(head), deadline);
  }
  out.data_len = total;
  EncodeFrameHeader(out, head);
  if (!staged.empty()) {
    LDD_RETURN_IF_ERROR(SendAll(fd, head, sizeof(head), deadline));
    return (*stager)->Produce(
        staged, [&](const std::vector<iovec>& v) { IovCursor c(v); return SendAll(fd, c, deadline); }, deadline,
        lease);
  }
  IovCursor from;
  from.Append(head, sizeof(head));
  for (const iovec& v : iovs) from.Append(v.iov_base, v.iov_len);
  return SendAll(fd, from, deadline);
}

}  // namespace

int64_t ServeTimeoutMs(uint32_t requested_ms) {
  return std::clamp<int64_t>(requested_ms, kMinServeTimeoutMs, kMaxPeerRequestMs) + 1000;
}

std::string ServeDataConnection(const Socket& socket, RegionTable& regions, int device_id) {
  const int fd = socket.fd();
  std::unique_ptr<DeviceStager> stager;  // made on the first request that touches GPU memory
  for (;;) {
    if (!WaitReadable(fd, Deadline::Never())) continue;
    FrameHeader h;
    std::vector<uint8_t> meta;
    Result r = RecvFrame(fd, &h, &meta, Deadline::AfterMillis(kFrameBodyTimeoutMs));
    if (!r.ok()) return r.message();
    if (h.type != MsgType::kRead && h.type != MsgType::kWrite)
      return Msg("unexpected frame type ", static_cast<int>(h.type), " on a data connection");
    r = ServeOne(fd, regions, h, meta, device_id, &stager);
    if (!r.ok()) return r.message();
  }
}

}  // namespace lldd
