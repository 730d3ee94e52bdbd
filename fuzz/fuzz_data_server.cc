// Fuzz target: the TCP data server (ServeDataConnection), fed the input as
// the byte stream a hostile peer sends on a data connection.
//
// Two regions of a real buffer are registered (ids 1 and 2, as in a fresh
// table); the bytes around them are guard bytes. The server runs in a
// thread on one end of a socketpair; this side sends the input, reads and
// drops the answers, then closes its sending half so that the server meets
// end-of-stream and returns. Afterwards:
//   - every guard byte is intact (no WRITE landed outside a region);
//   - under AddressSanitizer the guards are also poisoned while the server
//     runs, so a READ that sends a guard byte (sendmsg) or a WRITE that
//     receives into one (recvmsg) is reported at the faulty access;
//   - the server returned (no hang: libFuzzer's -timeout catches one), and
//     released every region (Remove() would wait forever on a leaked lease).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "transport/tcp/data_server.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LDD_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LDD_FUZZ_ASAN 1
#endif
#ifdef LDD_FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#define LDD_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define LDD_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define LDD_POISON(p, n) ((void)(p), (void)(n))
#define LDD_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace {

using namespace lldd;

constexpr uint8_t kGuard = 0xA5;
constexpr size_t kBufferBytes = 1024;
// Regions start 8-aligned (so ASan can poison the guard right before them)
// and have odd lengths (so the guard right after starts mid-granule).
constexpr size_t kRegionAAt = 64;
constexpr size_t kRegionABytes = 250;
constexpr size_t kRegionBAt = 384;
constexpr size_t kRegionBBytes = 101;

alignas(64) uint8_t g_buffer[kBufferBytes];

bool InRegion(size_t i) {
  return (i >= kRegionAAt && i < kRegionAAt + kRegionABytes) || (i >= kRegionBAt && i < kRegionBAt + kRegionBBytes);
}

void SetGuards(bool poisoned) {
  // Guards: [0, A), [A end, B), [B end, buffer end).
  const size_t spans[3][2] = {{0, kRegionAAt},
                              {kRegionAAt + kRegionABytes, kRegionBAt},
                              {kRegionBAt + kRegionBBytes, kBufferBytes}};
  for (const auto& s : spans) {
    if (poisoned)
      LDD_POISON(g_buffer + s[0], s[1] - s[0]);
    else
      LDD_UNPOISON(g_buffer + s[0], s[1] - s[0]);
  }
}

// Sends `data` and reads everything the server answers, until the server
// closes its end.
void Converse(int fd, const uint8_t* data, size_t size) {
  size_t sent = 0;
  bool write_open = true;
  if (size == 0) {
    ::shutdown(fd, SHUT_WR);
    write_open = false;
  }
  uint8_t sink[1 << 16];
  for (;;) {
    pollfd pfd{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0};
    if (::poll(&pfd, 1, -1) < 0) {
      if (errno == EINTR) continue;
      std::abort();
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
      if (n == 0) return;  // the server finished
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return;  // reset: finished too
    }
    if (write_open && (pfd.revents & POLLOUT)) {
      ssize_t n = ::send(fd, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) sent = size;  // server gone
      if (sent == size) {
        ::shutdown(fd, SHUT_WR);
        write_open = false;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::memset(g_buffer, kGuard, sizeof(g_buffer));
  for (size_t i = 0; i < kBufferBytes; ++i)
    if (InRegion(i)) g_buffer[i] = static_cast<uint8_t>(i % 97);

  RegionTable regions;
  const uint64_t a = regions.Add(g_buffer + kRegionAAt, kRegionABytes);
  const uint64_t b = regions.Add(g_buffer + kRegionBAt, kRegionBBytes);
  if (a != 1 || b != 2) std::abort();  // the seeds name regions 1 and 2

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  SetGuards(true);
  std::thread server([&regions, fd = fds[1]] {
    Socket socket(fd);
    (void)ServeDataConnection(socket, regions);
  });  // the socket closes when the server returns: the client sees EOF
  Converse(fds[0], data, size);
  server.join();
  ::close(fds[0]);
  regions.Remove({a, b});  // returns only if no lease leaked
  SetGuards(false);

  for (size_t i = 0; i < kBufferBytes; ++i) {
    if (!InRegion(i) && g_buffer[i] != kGuard) {
      std::fprintf(stderr, "fuzz_data_server: guard byte %zu overwritten\n", i);
      std::abort();
    }
  }
  return 0;
}
