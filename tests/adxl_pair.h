// Two adxl engines in one process, for the GPU tests (fake and real): a
// server holding memory the test gives it, and a client with a registered
// host buffer of the same size, connected to it. Header-only, so that the
// self-contained gpu_tests can use it too.
#ifndef LLM_DATADIST_TESTS_ADXL_PAIR_H_
#define LLM_DATADIST_TESTS_ADXL_PAIR_H_

#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "adxl/adxl_engine.h"

namespace lldd_test {

// Initializes `server` listening on a free loopback port; its name, or ""
// if no port could be had.
inline std::string ListenOnSomePort(hixl::Hixl& server) {
  for (int port = 21000 + (getpid() % 20000), tries = 0; tries < 50; ++port, ++tries) {
    const std::string name = "127.0.0.1:" + std::to_string(port);
    if (server.Initialize(name.c_str(), {}) == hixl::SUCCESS) return name;
  }
  return "";
}

struct AdxlPair {
  adxl::AdxlEngine server;
  adxl::AdxlEngine client;
  std::string name;
  std::vector<uint8_t> host;
  adxl::MemHandle served = nullptr;

  // "" once connected, else what failed.
  std::string Open(void* mem, size_t len, adxl::MemType type, int32_t timeout_ms) {
    name = ListenOnSomePort(server);
    if (name.empty()) return "no free port";
    if (server.RegisterMem({reinterpret_cast<uintptr_t>(mem), len}, type, served) != adxl::SUCCESS)
      return "server RegisterMem";
    if (client.Initialize("127.0.0.1", {}) != adxl::SUCCESS) return "client Initialize";
    host.assign(len, 0);
    adxl::MemHandle local = nullptr;
    if (client.RegisterMem({reinterpret_cast<uintptr_t>(host.data()), len}, adxl::MEM_HOST, local) != adxl::SUCCESS)
      return "client RegisterMem";
    return client.Connect(name.c_str(), timeout_ms) == adxl::SUCCESS ? "" : "Connect";
  }
  // The whole served memory into `host`.
  adxl::Status ReadAll(const void* mem, int32_t timeout_ms) {
    return client.TransferSync(name.c_str(), adxl::READ,
                               {{reinterpret_cast<uintptr_t>(host.data()), reinterpret_cast<uintptr_t>(mem), host.size()}},
                               timeout_ms);
  }
  ~AdxlPair() {
    client.Finalize();
    if (served != nullptr) (void)server.DeregisterMem(served);
    server.Finalize();
  }
};

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_ADXL_PAIR_H_
