#include "engine/acceptor.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <thread>

#include "common/logging.h"
#include "engine/handshake.h"

namespace lldd {
namespace {

constexpr uint64_t kListenerTag = ~uint64_t{0};
constexpr uint64_t kWakeTag = ~uint64_t{0} - 1;
// Accepts per wake-up, so that a burst of new connections never delays
// reading the HELLOs already in.
constexpr int kAcceptBatch = 128;
constexpr int kEventBatch = 256;

std::string PeerText(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof(text));
  else if (addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, text, sizeof(text));
  return text;
}

enum class ReadState { kMore, kDone, kClosed, kBad };

}  // namespace

struct Acceptor::Loop {
  Socket listener;
  Socket epoll;
  Socket wake;
  AdmissionTable table;
  ThreadGroup* threads = nullptr;
  OnHello on_hello;
  metrics::Registry* metrics = nullptr;
  std::atomic<bool> stopping{false};
  std::string why_bad;  // of the last kBad read
  std::promise<void> finished;  // the loop closed the listener and every pending connection

  explicit Loop(AdmissionLimits limits) : table(limits) {}

  void Run();
  void AcceptSome();
  void Drop(std::unique_ptr<PendingConn> conn, const char* why, std::atomic<uint64_t>* counter);
  ReadState ReadSome(PendingConn& c);
  void OnReadable(uint64_t id);
  void HandOn(std::unique_ptr<PendingConn> conn);
  void Count(std::atomic<uint64_t>* counter) {
    if (counter != nullptr) counter->fetch_add(1, std::memory_order_relaxed);
  }
  void SetPending() {
    if (metrics) metrics->handshakes_pending.store(static_cast<int64_t>(table.size()), std::memory_order_relaxed);
  }
};

Result Acceptor::Start(const std::string& host, uint16_t port, ThreadGroup& threads, OnHello on_hello,
                       metrics::Registry* metrics, AdmissionLimits limits) {
  auto loop = std::make_shared<Loop>(limits);
  uint16_t bound = 0;
  Result r = Listen(host, port, &loop->listener, &bound);
  if (!r.ok()) return Result::Failed(r.message());
  loop->epoll = Socket(epoll_create1(EPOLL_CLOEXEC));
  loop->wake = Socket(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->epoll.valid() || !loop->wake.valid()) return Result::Failed(Msg("epoll/eventfd: ", std::strerror(errno)));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenerTag;
  epoll_ctl(loop->epoll.fd(), EPOLL_CTL_ADD, loop->listener.fd(), &ev);
  ev.data.u64 = kWakeTag;
  epoll_ctl(loop->epoll.fd(), EPOLL_CTL_ADD, loop->wake.fd(), &ev);
  loop->threads = &threads;
  loop->on_hello = std::move(on_hello);
  loop->metrics = metrics;
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_) return Result::Failed("already listening");
  loop_ = loop;
  port_ = bound;
  threads.Spawn([loop] { loop->Run(); });
  return Result::Ok();
}

void Acceptor::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_) {
    loop_->stopping = true;
    const uint64_t one = 1;
    (void)!::write(loop_->wake.fd(), &one, sizeof(one));
    // The port is free again when Stop() returns (SetRole may listen anew).
    loop_->finished.get_future().wait();
    loop_.reset();
  }
  port_ = 0;
}

void Acceptor::Loop::Run() {
  epoll_event events[kEventBatch];
  while (!stopping) {
    const auto now = AdmissionTable::Clock::now();
    while (PendingConn* late = table.Expired(now))
      Drop(table.Remove(late->id), "no HELLO within the first-frame deadline", metrics ? &metrics->dropped_timeout : nullptr);
    SetPending();
    const auto next = table.NextDeadline();
    int timeout_ms = -1;
    if (next != AdmissionTable::Clock::time_point::max())
      timeout_ms = static_cast<int>(
          std::clamp<int64_t>(std::chrono::ceil<std::chrono::milliseconds>(next - now).count(), 0, 1000));
    const int n = epoll_wait(epoll.fd(), events, kEventBatch, timeout_ms);
    if (n < 0 && errno != EINTR) {
      LDD_LOG(Error) << "listener stopped: epoll_wait: " << std::strerror(errno);
      break;
    }
    // HELLOs already in first, new connections after: a burst of accepts
    // (which may evict) never comes between a connection and its HELLO.
    bool accept = false;
    for (int i = 0; i < n && !stopping; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kListenerTag) accept = true;
      else if (tag != kWakeTag) OnReadable(tag);
    }
    if (accept && !stopping) AcceptSome();
  }
  for (uint64_t id : table.Ids()) table.Remove(id);
  listener.Close();
  if (metrics) metrics->handshakes_pending.store(0, std::memory_order_relaxed);
  finished.set_value();
}

void Acceptor::Loop::AcceptSome() {
  for (int i = 0; i < kAcceptBatch; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && table.size() > 0) {
        // Out of descriptors: the oldest pending connection gives up its own.
        Drop(table.Remove(table.Ids().front()), "out of descriptors", metrics ? &metrics->dropped_full : nullptr);
        continue;
      }
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      else if (errno != EAGAIN && errno != EWOULDBLOCK) LDD_LOG(Warn) << "accept(): " << std::strerror(errno);
      return;
    }
    if (metrics) metrics->connections_accepted.fetch_add(1, std::memory_order_relaxed);
    std::unique_ptr<PendingConn> victim;
    AdmissionTable::Evicted why = AdmissionTable::Evicted::kNone;
    PendingConn* c = table.Add(std::make_shared<Socket>(fd), PeerText(addr), AdmissionTable::Clock::now(), &victim, &why);
    if (why == AdmissionTable::Evicted::kSource)
      Drop(std::move(victim), "its source holds too many pending connections", metrics ? &metrics->dropped_source : nullptr);
    else if (why == AdmissionTable::Evicted::kFull)
      Drop(std::move(victim), "the oldest of a full admission table", metrics ? &metrics->dropped_full : nullptr);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = c->id;
    if (epoll_ctl(epoll.fd(), EPOLL_CTL_ADD, c->socket->fd(), &ev) != 0)
      Drop(table.Remove(c->id), "epoll_ctl failed", nullptr);
  }
}

void Acceptor::Loop::Drop(std::unique_ptr<PendingConn> conn, const char* why, std::atomic<uint64_t>* counter) {
  if (!conn) return;
  Count(counter);
  // A flood makes thousands of these: debug level, the counters tell.
  LDD_LOG(Debug) << "dropping connection from " << conn->peer << ": " << why;
  // Closing the descriptor also takes it out of the epoll set.
}

ReadState Acceptor::Loop::ReadSome(PendingConn& c) {
  const int fd = c.socket->fd();
  for (;;) {
    uint8_t* into;
    size_t want;
    if (c.head_got < kFrameHeaderBytes) {
      into = c.head + c.head_got;
      want = kFrameHeaderBytes - c.head_got;
    } else {
      if (c.meta_got == c.header.meta_len) return ReadState::kDone;
      // The buffer grows with what arrives, never to an announced size
      // the sender has not backed with bytes.
      if (c.meta.size() == c.meta_got)
        c.meta.resize(std::min<size_t>(c.header.meta_len, std::max<size_t>(4096, c.meta_got * 2)));
      into = c.meta.data() + c.meta_got;
      want = c.meta.size() - c.meta_got;
    }
    const ssize_t n = ::recv(fd, into, want, 0);
    if (n == 0) return ReadState::kClosed;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? ReadState::kMore : ReadState::kClosed;
    }
    if (c.head_got < kFrameHeaderBytes) {
      c.head_got += static_cast<size_t>(n);
      if (c.head_got < kFrameHeaderBytes) continue;
      Result r = DecodeFrameHeader(c.head, &c.header);
      if (r.ok() && c.header.type != MsgType::kHello) r = Result::Failed("first frame is not HELLO");
      if (r.ok() && c.header.meta_len > kHelloMetaLimit)
        r = Result::Failed(Msg("HELLO of ", c.header.meta_len, " bytes exceeds the limit of ", kHelloMetaLimit));
      if (!r.ok()) {
        why_bad = r.message();
        return ReadState::kBad;
      }
    } else {
      c.meta_got += static_cast<size_t>(n);
    }
  }
}

void Acceptor::Loop::OnReadable(uint64_t id) {
  PendingConn* c = table.Find(id);
  if (c == nullptr) return;  // dropped earlier in this batch
  switch (ReadSome(*c)) {
    case ReadState::kMore:
      return;
    case ReadState::kClosed:
      Drop(table.Remove(id), "closed before its HELLO", nullptr);
      return;
    case ReadState::kBad:
      LDD_LOG(Warn) << "dropping connection from " << c->peer << ": " << why_bad;
      Drop(table.Remove(id), "bad first frame", metrics ? &metrics->dropped_bad_frame : nullptr);
      return;
    case ReadState::kDone:
      HandOn(table.Remove(id));
      return;
  }
}

void Acceptor::Loop::HandOn(std::unique_ptr<PendingConn> conn) {
  epoll_ctl(epoll.fd(), EPOLL_CTL_DEL, conn->socket->fd(), nullptr);
  Hello hello;
  Result r = DecodeHello(conn->meta, &hello);
  if (!r.ok()) {
    LDD_LOG(Warn) << "dropping connection from " << conn->peer << ": " << r.message();
    return Drop(std::move(conn), "malformed HELLO", metrics ? &metrics->dropped_bad_frame : nullptr);
  }
  if (metrics) metrics->handshakes_completed.fetch_add(1, std::memory_order_relaxed);
  TuneForTransfer(conn->socket->fd());
  threads->Spawn([on_hello = on_hello, socket = conn->socket, peer = conn->peer, request_id = conn->header.request_id,
                  hello = std::move(hello)] { on_hello(socket, peer, request_id, hello); });
}

}  // namespace lldd
