#include "netns.h"

#include <unistd.h>

#include <cstdlib>

namespace lldd_test {
namespace {
bool Run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }
}  // namespace

NetnsPeerHost::NetnsPeerHost() {
  if (geteuid() != 0) {
    unavailable_ = "network namespaces need root";
    return;
  }
  if (!Run("command -v ip")) {
    unavailable_ = "iproute2 ('ip') is not installed";
    return;
  }
  subnet_ = static_cast<int>(getpid() % 250) + 1;
  name_ = "lldd" + std::to_string(getpid());
  veth_ = "ld" + std::to_string(getpid());
  const std::string inner = veth_ + "p";
  bool ok = Run("ip netns add " + name_) &&
            Run("ip link add " + veth_ + " type veth peer name " + inner) &&
            Run("ip link set " + inner + " netns " + name_) &&
            Run("ip addr add " + local_ip() + "/24 dev " + veth_) && Run("ip link set " + veth_ + " up") &&
            Run("ip netns exec " + name_ + " ip addr add " + peer_ip() + "/24 dev " + inner) &&
            Run("ip netns exec " + name_ + " ip link set " + inner + " up") &&
            Run("ip netns exec " + name_ + " ip link set lo up");
  if (!ok) unavailable_ = "this machine does not allow creating network namespaces and veth pairs";
}

NetnsPeerHost::~NetnsPeerHost() {
  if (name_.empty()) return;
  Run("ip link del " + veth_);
  Run("ip netns del " + name_);
}

bool NetnsPeerHost::SetLinkUp(bool up) { return Run("ip link set " + veth_ + (up ? " up" : " down")); }

}  // namespace lldd_test

namespace lldd_test {
bool NetnsPeerHost::ThrottlePeerEgress(const std::string& rate) {
  return Run("ip netns exec " + name_ + " tc qdisc add dev " + veth_ + "p root tbf rate " + rate +
             " burst 64kb latency 200ms");
}
}  // namespace lldd_test
