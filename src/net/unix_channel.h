// Message-preserving Unix sockets (SOCK_SEQPACKET) in the abstract
// namespace, able to carry file descriptors.
//
// The abstract namespace belongs to a network namespace: a peer in another
// one cannot connect, which is exactly when memory sharing must not be
// attempted.
#ifndef LLM_DATADIST_SRC_NET_UNIX_CHANNEL_H_
#define LLM_DATADIST_SRC_NET_UNIX_CHANNEL_H_

#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "net/socket.h"

namespace lldd {

// Largest message we send or accept on a Unix channel.
constexpr size_t kMaxUnixMessage = 192U << 10;
// Most descriptors one message carries (the kernel allows 253).
constexpr size_t kMaxFdsPerMessage = 64;

// A unique abstract name for this process's listener.
std::string MakeAbstractName();
Result UnixListen(const std::string& abstract_name, Socket* out);
Result UnixConnect(const std::string& abstract_name, Deadline deadline, Socket* out);
// Sends one message with optional descriptors (which stay open here).
Result UnixSend(int fd, const std::vector<uint8_t>& message, const std::vector<int>& fds, Deadline deadline);
// Receives one message; descriptors that came with it are returned owned
// by the caller (closed by it).
Result UnixRecv(int fd, std::vector<uint8_t>* message, std::vector<int>* fds, Deadline deadline);

// "boot id / network namespace / pid namespace": equal only for two
// processes that can share memory and name each other's pids.
std::string HostIdentity();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_NET_UNIX_CHANNEL_H_
