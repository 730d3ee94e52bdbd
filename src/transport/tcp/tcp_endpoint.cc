#include "transport/tcp/tcp_endpoint.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <thread>

#include "common/split_evenly.h"
#include "common/worker_pool.h"
#include "control/protocol.h"
#include "transport/tcp/device_staging.h"
#include "transport/tcp/data_server.h"
#include "transport/tcp/tcp_transport.h"

namespace lldd {
namespace {

constexpr uint32_t kErrorTextLimit = 64U << 10;

enum class Phase { kSend, kRecvHeader, kRecvData, kRecvError, kDone };

// One request on one connection.
struct Stripe {
  SocketPtr socket;
  uint64_t request_id = 0;
  uint64_t bytes = 0;
  std::vector<uint8_t> head;  // frame header + segment list
  std::vector<iovec> data;    // local side of the segments, in order
  IovCursor send;
  IovCursor recv;
  uint8_t resp_head[kFrameHeaderBytes] = {};
  std::vector<uint8_t> error_text;
  Phase phase = Phase::kSend;
  bool timed_out = false;
  Result outcome;
  bool connection_clean = false;
};

void BuildRequest(Stripe& st, const std::vector<IoOp>& ops, bool is_write, Deadline deadline) {
  TransferRequest req;
  req.timeout_ms = static_cast<uint32_t>(std::min<int64_t>(deadline.RemainingMillis(), UINT32_MAX));
  req.segments.reserve(ops.size());
  st.data.reserve(ops.size());
  for (const IoOp& op : ops) {
    req.segments.push_back({op.region_id, op.remote_offset, op.length});
    st.data.push_back({op.local, op.length});
    st.bytes += op.length;
  }
  std::vector<uint8_t> meta = EncodeTransferRequest(req);
  FrameHeader h;
  h.type = is_write ? MsgType::kWrite : MsgType::kRead;
  h.request_id = st.request_id;
  h.meta_len = static_cast<uint32_t>(meta.size());
  h.data_len = is_write ? st.bytes : 0;
  st.head.resize(kFrameHeaderBytes + meta.size());
  EncodeFrameHeader(h, st.head.data());
  std::memcpy(st.head.data() + kFrameHeaderBytes, meta.data(), meta.size());
  st.send.Append(st.head.data(), st.head.size());
  if (is_write)
    for (const iovec& v : st.data) st.send.Append(v.iov_base, v.iov_len);
  st.recv.Append(st.resp_head, kFrameHeaderBytes);
}

// Called when the response header is complete; decides what follows.
void OnResponseHeader(Stripe& st, bool is_write) {
  FrameHeader h;
  Result r = DecodeFrameHeader(st.resp_head, &h);
  MsgType expected = is_write ? MsgType::kWriteResp : MsgType::kReadResp;
  if (r.ok() && (h.type != expected || h.request_id != st.request_id))
    r = Result::Failed("response does not match the request");
  if (r.ok() && h.status != llm_datadist::LLM_SUCCESS) {
    if (h.meta_len > kErrorTextLimit || h.data_len != 0) {
      r = Result::Failed("oversized error response");
    } else {
      st.outcome = Result(h.status, "");
      st.error_text.resize(h.meta_len);
      st.recv = IovCursor();
      st.recv.Append(st.error_text.data(), st.error_text.size());
      st.phase = st.recv.done() ? Phase::kDone : Phase::kRecvError;
      st.connection_clean = st.phase == Phase::kDone;
      return;
    }
  }
  if (r.ok() && (h.meta_len != 0 || h.data_len != (is_write ? 0 : st.bytes)))
    r = Result::Failed("response length does not match the request");
  if (!r.ok()) {
    st.outcome = Result::LinkFailed(Msg("protocol error from peer: ", r.message()));
    st.phase = Phase::kDone;
    return;
  }
  if (is_write) {
    st.phase = Phase::kDone;
    st.connection_clean = true;
    return;
  }
  st.recv = IovCursor(st.data);
  st.phase = st.recv.done() ? Phase::kDone : Phase::kRecvData;
  st.connection_clean = st.phase == Phase::kDone;
}

// Advances a stripe as far as it goes without waiting for poll(), or until
// the deadline; `alone`: the stripe has its thread to itself. Returns the
// poll events it now waits for (0 when done).
short Pump(Stripe& st, bool is_write, Deadline deadline, bool alone) {
  for (;;) {
    IoStep step;
    // A fast peer may never make a send or receive wait: the deadline is
    // checked between system calls too, not only when poll() would block.
    if (st.phase != Phase::kDone && deadline.Expired()) return st.phase == Phase::kSend ? POLLOUT : POLLIN;
    switch (st.phase) {
      case Phase::kDone:
        return 0;
      case Phase::kSend:
        step = SendSome(st.socket->fd(), st.send);
        if (step == IoStep::kProgress && st.send.done()) st.phase = Phase::kRecvHeader;
        if (step == IoStep::kWouldBlock) return POLLOUT;
        break;
      default:
        // A thread with one stripe to drive sleeps in the kernel until
        // its bytes are in (socket.h says why); with several it polls.
        step = alone && st.phase == Phase::kRecvData ? RecvSomeThenWait(st.socket->fd(), st.recv, deadline)
                                                     : RecvSome(st.socket->fd(), st.recv);
        if (step == IoStep::kProgress && st.recv.done()) {
          if (st.phase == Phase::kRecvHeader) {
            OnResponseHeader(st, is_write);
          } else if (st.phase == Phase::kRecvError) {
            st.outcome = Result(st.outcome.code(), Msg("peer refused: ", DecodeText(st.error_text)));
            st.phase = Phase::kDone;
            st.connection_clean = true;
          } else {
            st.phase = Phase::kDone;
            st.connection_clean = true;
          }
        }
        if (step == IoStep::kWouldBlock) return POLLIN;
        break;
    }
    if (step == IoStep::kClosed || step == IoStep::kError) {
      st.outcome = Result::LinkFailed(step == IoStep::kClosed ? "data connection closed by peer"
                                                              : Msg("data connection failed: ", std::strerror(errno)));
      st.phase = Phase::kDone;
      return 0;
    }
  }
}

// Drives some stripes to completion or to the deadline, on one thread.
void DriveStripes(std::vector<Stripe*>& stripes, bool is_write, Deadline deadline) {
  std::vector<pollfd> fds;
  std::vector<Stripe*> waiting;
  for (;;) {
    fds.clear();
    waiting.clear();
    for (Stripe* st : stripes) {
      short events = Pump(*st, is_write, deadline, stripes.size() == 1);
      if (events != 0) {
        fds.push_back({st->socket->fd(), events, 0});
        waiting.push_back(st);
      }
    }
    if (fds.empty()) return;
    // Checked on every round, not only when poll() times out: while bytes
    // keep flowing poll() never does, and a slow transfer must still stop.
    if (deadline.Expired()) {
      for (Stripe* st : waiting) st->timed_out = true;
      return;
    }
    int rc = ::poll(fds.data(), fds.size(), deadline.RemainingMillisForPoll());
    if (rc == 0) {
      for (Stripe* st : waiting) st->timed_out = true;
      return;
    }
    if (rc < 0 && errno != EINTR) {
      for (Stripe* st : waiting) {
        st->outcome = Result::Failed(Msg("poll: ", std::strerror(errno)));
        st->phase = Phase::kDone;
      }
      return;
    }
  }
}

// How many threads drive the stripes of one transfer: a stream moves a few
// GB/s and needs about a core (on loopback, both ends' TCP work runs on the
// sending thread), so up to one per stripe, within the machine's cores.
size_t DrivingThreads(size_t stripes) {
  static const size_t cores = std::max(1U, std::thread::hardware_concurrency());
  return std::max<size_t>(1, std::min(stripes, cores));
}

}  // namespace

Result AdmitDataConnection(const LinkHandle& link, size_t width) {
  if (link.TrackedSockets() > 2 * width + 8)
    return Result(llm_datadist::LLM_LINK_BUSY, "too many data connections on this link");
  return Result::Ok();
}

TcpEndpoint::TcpEndpoint(std::shared_ptr<ConnectionPool> pool, const std::shared_ptr<LinkHandle>& link,
                         RegionTable& regions, int device_id)
    : pool_(std::move(pool)), link_(link), regions_(regions), device_id_(device_id) {}

TcpEndpoint::~TcpEndpoint() = default;

Result TcpEndpoint::Transfer(const std::vector<IoOp>& ops, bool is_write, Deadline deadline,
                             std::shared_ptr<const void> hold) {
  if (staging_ && staging_->AnyLocalDevice(ops))
    return staging_->Transfer(
        ops, is_write, deadline,
        [this](const std::vector<IoOp>& host, bool write, Deadline d) { return TransferHost(host, write, d); },
        std::move(hold));
  return TransferHost(ops, is_write, deadline);
}

Result TcpEndpoint::OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) {
  reply->clear();
  uint8_t kind = 0;
  uint64_t dial_id = 0;
  if (!DecodeTcpJoin(request, &kind, &dial_id) || kind != kOpenReverse)
    return Result::ParamInvalid("unknown tcp request");
  auto link = link_.lock();
  if (!link || !link->initiator()) return Result::ParamInvalid("only the connecting side dials");
  LDD_RETURN_IF_ERROR(AdmitDataConnection(*link, pool_->max_connections()));
  SocketPtr socket;
  LDD_RETURN_IF_ERROR(link->DialJoin("tcp", EncodeTcpJoin(static_cast<uint8_t>(TcpJoin::kReverse), dial_id),
                                     Deadline::AfterMillis(5000), &socket));
  link->TrackSocket(socket);
  RegionTable* regions = &regions_;
  const int device_id = device_id_;
  link->Spawn([socket, regions, device_id] { ServeDataConnection(*socket, *regions, device_id); });
  return Result::Ok();
}

Result TcpEndpoint::TransferHost(const std::vector<IoOp>& ops, bool is_write, Deadline deadline) {
  uint64_t total = 0;
  for (const IoOp& op : ops) total += op.length;
  if (total == 0) return Result::Ok();

  // Concurrent callers share the link's connections rather than the first
  // one taking them all while the others queue behind it.
  struct Active {
    std::atomic<size_t>& n;
    explicit Active(std::atomic<size_t>& count) : n(count) { ++n; }
    ~Active() { --n; }
  } active(active_);
  const size_t share = std::max<size_t>(1, pool_->max_connections() / std::max<size_t>(1, active_.load()));
  const size_t want = static_cast<size_t>(std::min<uint64_t>(share, (total + kMinStripeBytes - 1) / kMinStripeBytes));
  std::vector<SocketPtr> sockets;
  LDD_RETURN_IF_ERROR(pool_->Acquire(want, deadline, &sockets));

  auto groups = SplitEvenly(ops, sockets.size(), [](IoOp& op, uint64_t n) {
    op.local += n;
    op.remote_offset += n;
  });
  std::vector<Stripe> stripes(groups.size());
  for (size_t i = 0; i < stripes.size(); ++i) {
    stripes[i].socket = sockets[i];
    stripes[i].request_id = next_request_id_++;
    BuildRequest(stripes[i], groups[i], is_write, deadline);
  }
  for (size_t i = stripes.size(); i < sockets.size(); ++i) pool_->Release(sockets[i]);

  // Stripes dealt round-robin over the driving threads.
  const size_t threads = DrivingThreads(stripes.size());
  std::vector<std::vector<Stripe*>> shares(threads);
  for (size_t i = 0; i < stripes.size(); ++i) shares[i % threads].push_back(&stripes[i]);
  if (threads == 1) {
    DriveStripes(shares[0], is_write, deadline);
  } else {
    std::vector<std::function<void()>> jobs;
    for (auto& mine : shares) jobs.push_back([&mine, is_write, deadline] { DriveStripes(mine, is_write, deadline); });
    RunAll(jobs);
  }

  Result result;
  bool interrupted = false;
  for (auto& st : stripes) {
    bool done = st.phase == Phase::kDone;
    if (done && st.connection_clean) {
      pool_->Release(st.socket);
    } else {
      // Bytes of this request may still arrive: the connection is closed
      // before we return, so none can land in memory the caller reuses.
      pool_->Discard(st.socket);
    }
    if (!done && st.timed_out && result.ok())
      result = Result::Timeout(Msg(is_write ? "write" : "read", " of ", total, " bytes did not finish in time"));
    if (done && !st.outcome.ok() && result.ok()) result = st.outcome;
    if (!done && !st.timed_out) interrupted = true;
  }
  if (result.ok() && interrupted) return Result::Failed("transfer interrupted");
  return result;
}

}  // namespace lldd
