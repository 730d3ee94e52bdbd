// A real etcd for the tests of the `etcd` label: Debian's etcd binary on
// loopback ports, with a temporary data directory, killed and removed at
// the end. Tests skip where the binary is absent.
#ifndef LLM_DATADIST_TESTS_ETCD_SERVER_H_
#define LLM_DATADIST_TESTS_ETCD_SERVER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace lldd_test {

class EtcdServer {
 public:
  // The etcd binary ($LLDD_ETCD, else etcd on PATH, else /usr/bin/etcd);
  // "" if there is none.
  static std::string FindBinary();

  EtcdServer();  // picks free ports and a data directory; starts nothing
  ~EtcdServer();
  // Starts etcd (on the same ports and data as before, after a Kill) and
  // waits until it answers; false (and why) if it does not.
  bool Start(std::string* why);
  void Kill();  // SIGKILL, no goodbye
  std::string url() const { return "etcd://127.0.0.1:" + std::to_string(client_port_); }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }

 private:
  pid_t pid_ = -1;
  uint16_t client_port_ = 0;
  uint16_t peer_port_ = 0;
  std::string dir_;
};

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_ETCD_SERVER_H_
