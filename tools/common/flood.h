// A connection flood against a listener, for tests and the admission
// benchmark: `silent` connections that never send a byte and `drip`
// connections that send one byte every tick (200 ms), each dialed again as
// soon as the server drops it, so the flood stays at full strength for as
// long as it runs. Each kind leaves from its own loopback source address
// (an attacker's own hosts); pass the same address to both to share one.
// Header-only: tools and tests both use it.
#ifndef LLM_DATADIST_TOOLS_COMMON_FLOOD_H_
#define LLM_DATADIST_TOOLS_COMMON_FLOOD_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace lldd_tools {

class ConnectionFlood {
 public:
  static constexpr std::chrono::milliseconds kTick{200};

  ConnectionFlood(uint16_t port, int silent, int drip, std::string silent_ip = "127.0.0.2",
                  std::string drip_ip = "127.0.0.3")
      : port_(port), silent_ip_(std::move(silent_ip)), drip_ip_(std::move(drip_ip)) {
    slots_.resize(static_cast<size_t>(silent + drip));
    for (int i = silent; i < silent + drip; ++i) slots_[static_cast<size_t>(i)].drip = true;
    Tick();  // the whole flood is up when the constructor returns
    thread_ = std::thread([this] {
      while (!stop_) {
        std::this_thread::sleep_for(kTick);
        Tick();
      }
    });
  }
  ~ConnectionFlood() {
    stop_ = true;
    thread_.join();
    for (auto& s : slots_)
      if (s.fd >= 0) ::close(s.fd);
  }
  ConnectionFlood(const ConnectionFlood&) = delete;
  ConnectionFlood& operator=(const ConnectionFlood&) = delete;

  uint64_t dials() const { return dials_.load(); }     // every connect, first ones too
  uint64_t dropped() const { return dropped_.load(); }  // connections the server closed
  int open() const { return open_.load(); }             // held after the last tick

 private:
  struct Slot {
    int fd = -1;
    bool drip = false;
    uint8_t sent = 0;
  };

  int Dial(const std::string& source) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &local.sin_addr);
    sockaddr_in remote{};
    remote.sin_family = AF_INET;
    remote.sin_port = htons(port_);
    inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
        (::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0 && errno != EINPROGRESS)) {
      ::close(fd);
      return -1;
    }
    ++dials_;
    return fd;
  }

  // Re-dials what the server dropped; drips a byte on each drip connection.
  void Tick() {
    std::vector<pollfd> fds;
    for (auto& s : slots_) fds.push_back({s.fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 0);
    int open = 0;
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        char b;
        if (::recv(s.fd, &b, 1, MSG_DONTWAIT) <= 0 || (fds[i].revents & (POLLHUP | POLLERR))) {
          ::close(s.fd);
          s.fd = -1;
          ++dropped_;
        }
      }
      if (s.fd < 0) {
        s.fd = Dial(s.drip ? drip_ip_ : silent_ip_);
        s.sent = 0;
      }
      if (s.fd < 0) continue;
      ++open;
      // A frame's first bytes (the magic and version of a HELLO header
      // would do as well: the server waits for the whole frame either way).
      if (s.drip) (void)!::send(s.fd, &s.sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT), ++s.sent;
    }
    open_ = open;
  }

  const uint16_t port_;
  const std::string silent_ip_, drip_ip_;
  std::vector<Slot> slots_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> dials_{0}, dropped_{0};
  std::atomic<int> open_{0};
  std::thread thread_;
};

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_FLOOD_H_
