// Plain TCP sockets for the tools' own traffic (side channels and the
// raw-socket baseline); the library's sockets are its own business.
#ifndef LLM_DATADIST_TOOLS_COMMON_TCP_H_
#define LLM_DATADIST_TOOLS_COMMON_TCP_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace lldd_tools {

// A listening socket on host:port (port 0: any free one); -1 and *error.
int TcpListen(const std::string& host, uint16_t port, std::string* error);
// A connected socket, retrying refused connections until timeout_ms passes
// (the other side may still be starting); -1 and *error.
int TcpConnect(const std::string& host, uint16_t port, int timeout_ms, std::string* error);
uint16_t LocalPort(int fd);
void SetNoDelay(int fd);
// Whole buffers or nothing; false when the connection fails or closes.
bool SendAll(int fd, const void* data, size_t len);
bool RecvAll(int fd, void* data, size_t len);

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_TCP_H_
