#include "net/unix_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/random.h"

namespace lldd {
namespace {

socklen_t FillAddress(const std::string& name, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  // Abstract namespace: a leading NUL, no file on disk, gone with the process.
  size_t n = std::min(name.size(), sizeof(addr->sun_path) - 1);
  std::memcpy(addr->sun_path + 1, name.data(), n);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

std::string ReadLink(const char* path) {
  char buf[256];
  ssize_t n = ::readlink(path, buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
}

}  // namespace

std::string MakeAbstractName() {
  return Msg("llm_datadist/", getpid(), "/", std::hex, RandomU64());
}

Result UnixListen(const std::string& name, Socket* out) {
  Socket s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s.valid()) return Result::Failed(Msg("unix socket: ", std::strerror(errno)));
  sockaddr_un addr;
  socklen_t len = FillAddress(name, &addr);
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), len) != 0)
    return Result::Failed(Msg("bind unix socket: ", std::strerror(errno)));
  if (::listen(s.fd(), 512) != 0) return Result::Failed(Msg("listen unix socket: ", std::strerror(errno)));
  *out = std::move(s);
  return Result::Ok();
}

Result UnixConnect(const std::string& name, Deadline deadline, Socket* out) {
  Socket s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s.valid()) return Result::LinkFailed(Msg("unix socket: ", std::strerror(errno)));
  sockaddr_un addr;
  socklen_t len = FillAddress(name, &addr);
  if (::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN)
      return Result::LinkFailed(Msg("cannot reach the peer's shared-memory socket: ", std::strerror(errno)));
    if (!WaitForEvents(s.fd(), POLLOUT, deadline)) return Result::Timeout("shared-memory socket connect timed out");
  }
  *out = std::move(s);
  return Result::Ok();
}

Result UnixSend(int fd, const std::vector<uint8_t>& message, const std::vector<int>& fds, Deadline deadline) {
  if (message.size() > kMaxUnixMessage || fds.size() > kMaxFdsPerMessage)
    return Result::Failed("unix message too large");
  iovec iov{const_cast<uint8_t*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(message.size())) return Result::Ok();
    if (n >= 0) return Result::Failed("short unix send");
    if (errno == EAGAIN || errno == EINTR) {
      if (!WaitForEvents(fd, POLLOUT, deadline)) return Result::Timeout("unix send timed out");
      continue;
    }
    return Result::LinkFailed(Msg("unix send: ", std::strerror(errno)));
  }
}

Result UnixRecv(int fd, std::vector<uint8_t>* message, std::vector<int>* fds, Deadline deadline) {
  message->resize(kMaxUnixMessage);
  fds->clear();
  iovec iov{message->data(), message->size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  for (;;) {
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!WaitForEvents(fd, POLLIN, deadline)) return Result::Timeout("unix receive timed out");
      continue;
    }
    if (n < 0) return Result::LinkFailed(Msg("unix receive: ", std::strerror(errno)));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int received;
          std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds->push_back(received);
        }
      }
    }
    if (n == 0) return Result::LinkFailed("shared-memory channel closed by peer");
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
      for (int f : *fds) ::close(f);
      fds->clear();
      return Result::Failed("oversized unix message");
    }
    message->resize(static_cast<size_t>(n));
    return Result::Ok();
  }
}

std::string HostIdentity() {
  std::string boot;
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::getline(in, boot);
  return boot + "/" + ReadLink("/proc/self/ns/net") + "/" + ReadLink("/proc/self/ns/pid");
}

}  // namespace lldd
