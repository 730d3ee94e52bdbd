#include "control/control_channel.h"

#include "common/logging.h"
#include "control/frame_io.h"

#include <thread>

namespace lldd {
namespace {
// Control messages are small; a peer announcing more is misbehaving.
constexpr uint32_t kControlMetaLimit = 1U << 20;
constexpr int kFrameBodyTimeoutMs = 10000;

bool IsResponse(MsgType t) {
  switch (t) {
    case MsgType::kHelloAck:
    case MsgType::kCacheInfo:
    case MsgType::kUnlinkAck:
    case MsgType::kTransportReply:
    case MsgType::kFrontEndReply:
      return true;
    default:
      return false;
  }
}

MsgType ResponseTo(MsgType t) { return static_cast<MsgType>(static_cast<uint16_t>(t) + 1); }

}  // namespace

ControlChannel::ControlChannel(std::shared_ptr<Socket> socket, Handler handler)
    : socket_(std::move(socket)), handler_(std::move(handler)) {}

std::string ControlChannel::Run() {
  std::string why;
  for (;;) {
    if (!WaitReadable(socket_->fd(), Deadline::Never())) continue;
    FrameHeader h;
    std::vector<uint8_t> meta;
    Result r = RecvFrame(socket_->fd(), &h, &meta, Deadline::AfterMillis(kFrameBodyTimeoutMs), kControlMetaLimit);
    if (!r.ok()) {
      why = r.message();
      break;
    }
    if (IsResponse(h.type)) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(h.request_id);
      if (it != pending_.end()) {  // else: its caller gave up already
        it->second->done = true;
        it->second->reply = Reply{h.status, std::move(meta)};
        pending_.erase(it);
        cv_.notify_all();
      }
      continue;
    }
    if (h.type != MsgType::kCacheQuery && h.type != MsgType::kUnlink && h.type != MsgType::kTransportCall &&
        h.type != MsgType::kFrontEndCall) {
      why = Msg("unexpected frame type ", static_cast<int>(h.type), " on control connection");
      break;
    }
    std::weak_ptr<ControlChannel> weak = weak_from_this();
    Result sent;
    bool answered_here = false;
    const std::thread::id reader = std::this_thread::get_id();
    handler_(h.type, std::move(meta), [weak, type = h.type, id = h.request_id, reader, &sent, &answered_here](Reply reply) {
      auto self = weak.lock();
      if (!self) return;
      Result r = self->Respond(type, id, reply);
      if (std::this_thread::get_id() == reader) {
        answered_here = true;
        sent = r;
      }
    });
    if (answered_here && !sent.ok()) {
      why = sent.message();
      break;
    }
    if (stop_after_reply_) {
      why = "link closed by the peer";
      break;
    }
  }
  Shutdown();
  return why;
}

Result ControlChannel::Send(const FrameHeader& header, const std::vector<uint8_t>& meta, Deadline deadline) {
  std::unique_lock<std::mutex> lock(send_state_mu_);
  if (!send_cv_.wait_until(lock, deadline.when(), [&] { return !sending_; }))
    return Result::Timeout("control connection busy");
  sending_ = true;
  lock.unlock();
  Result r = SendFrame(socket_->fd(), header, meta, deadline);
  lock.lock();
  sending_ = false;
  send_cv_.notify_one();
  return r;
}

Result ControlChannel::Respond(MsgType request, uint64_t request_id, const Reply& reply) {
  FrameHeader out;
  out.type = ResponseTo(request);
  out.request_id = request_id;
  out.status = reply.status;
  return Send(out, reply.meta, Deadline::AfterMillis(kFrameBodyTimeoutMs));
}

Result ControlChannel::Call(MsgType type, const std::vector<uint8_t>& meta, Deadline deadline, Reply* reply) {
  auto pending = std::make_shared<Pending>();
  FrameHeader h;
  h.type = type;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Result::LinkFailed("the link's control connection is closed");
    h.request_id = next_id_++;
    pending_[h.request_id] = pending;
  }
  Result sent = Send(h, meta, deadline);
  std::unique_lock<std::mutex> lock(mu_);
  if (!sent.ok()) {
    pending_.erase(h.request_id);
    return sent.code() == llm_datadist::LLM_TIMEOUT ? sent : Result::LinkFailed(sent.message());
  }
  cv_.wait_until(lock, deadline.when(), [&] { return pending->done || closed_; });
  if (pending->done) {
    *reply = std::move(pending->reply);
    return Result::Ok();
  }
  pending_.erase(h.request_id);
  if (closed_) return Result::LinkFailed("the link's control connection closed");
  return Result::Timeout("the peer did not answer in time");
}

void ControlChannel::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  socket_->Shutdown();
}

}  // namespace lldd
