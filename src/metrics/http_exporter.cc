#include "metrics/http_exporter.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <vector>

#include "common/logging.h"

namespace lldd::metrics {
namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  Socket socket;
  std::string in;
  std::string out;
  size_t sent = 0;
  Clock::time_point deadline;
};

std::string Reply(const char* status, const char* type, const std::string& body) {
  return Msg("HTTP/1.1 ", status, "\r\nContent-Type: ", type, "\r\nContent-Length: ", body.size(),
             "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

std::string HttpResponse(const std::string& head, const std::function<std::string()>& render) {
  const size_t eol = head.find("\r\n");
  const std::string line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos || line.compare(sp2 + 1, 5, "HTTP/") != 0)
    return Reply("400 Bad Request", "text/plain", "malformed request line\n");
  const std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  if (method != "GET" && method != "HEAD") return Reply("405 Method Not Allowed", "text/plain", "only GET\n");
  if (target != "/metrics") return Reply("404 Not Found", "text/plain", "try /metrics\n");
  std::string response = Reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", render());
  if (method == "HEAD") response.resize(response.find("\r\n\r\n") + 4);
  return response;
}

Result HttpExporter::Start(const std::string& host, uint16_t port, std::function<std::string()> render) {
  Result r = Listen(host, port, &listener_, &port_);
  if (!r.ok()) return r.WithContext("metrics listener");
  wake_ = Socket(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return Result::Failed(Msg("eventfd: ", std::strerror(errno)));
  render_ = std::move(render);
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
  LDD_LOG(Info) << "serving metrics on http://" << host << ":" << port_ << "/metrics";
  return Result::Ok();
}

void HttpExporter::Stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  const uint64_t one = 1;
  (void)!::write(wake_.fd(), &one, sizeof(one));
  thread_.join();
  listener_.Close();
  wake_.Close();
  port_ = 0;
}

void HttpExporter::Run() {
  std::deque<Conn> conns;  // oldest first
  std::vector<pollfd> fds;
  while (!stopping_) {
    const auto now = Clock::now();
    for (auto it = conns.begin(); it != conns.end();)
      it = it->deadline <= now ? conns.erase(it) : std::next(it);
    fds.assign({{wake_.fd(), POLLIN, 0}, {listener_.fd(), POLLIN, 0}});
    for (const Conn& c : conns) fds.push_back({c.socket.fd(), static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
    if (::poll(fds.data(), fds.size(), 250) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) {
      const int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        // Full: the oldest goes at the top of the next round (erasing it
        // now would shift the poll results below).
        if (conns.size() >= kMaxConnections) conns.front().deadline = Clock::time_point::min();
        conns.push_back(Conn{Socket(fd), {}, {}, 0, Clock::now() + std::chrono::milliseconds(kRequestTimeoutMs)});
        fds.push_back({fd, 0, 0});  // not polled this round
      }
    }
    // Walk back to front so erasing keeps the earlier indexes valid.
    for (size_t i = conns.size(); i-- > 0;) {
      Conn& c = conns[i];
      const short rev = i + 2 < fds.size() ? fds[i + 2].revents : 0;
      if (rev == 0) continue;
      bool close = (rev & (POLLERR | POLLNVAL)) != 0;
      if (!close && c.out.empty() && (rev & (POLLIN | POLLHUP))) {
        char buf[2048];
        const ssize_t n = ::recv(c.socket.fd(), buf, sizeof(buf), 0);
        if (n <= 0) {
          close = n == 0 || (errno != EAGAIN && errno != EINTR);
        } else {
          c.in.append(buf, static_cast<size_t>(n));
          const size_t end = c.in.find("\r\n\r\n");
          if (end != std::string::npos) {
            c.out = HttpResponse(c.in.substr(0, end), render_);
          } else if (c.in.size() > kMaxRequestBytes) {
            c.out = Reply("431 Request Header Fields Too Large", "text/plain", "request too large\n");
          }
        }
      } else if (!close && !c.out.empty() && (rev & POLLOUT)) {
        const ssize_t n = ::send(c.socket.fd(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n > 0) c.sent += static_cast<size_t>(n);
        close = (n < 0 && errno != EAGAIN && errno != EINTR) || c.sent == c.out.size();
      }
      if (close) conns.erase(conns.begin() + static_cast<long>(i));
    }
  }
}

}  // namespace lldd::metrics
