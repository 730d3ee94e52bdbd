// A second network host for tests: a network namespace joined to ours by a
// veth pair, made by the test and removed when it ends. Needs root (or
// CAP_NET_ADMIN) and iproute2; tests skip, saying why, where either is
// missing.
#ifndef LLM_DATADIST_TESTS_NETNS_H_
#define LLM_DATADIST_TESTS_NETNS_H_

#include <string>

namespace lldd_test {

class NetnsPeerHost {
 public:
  NetnsPeerHost();
  ~NetnsPeerHost();
  // Empty when the namespace exists; else why not (for GTEST_SKIP).
  const std::string& unavailable() const { return unavailable_; }
  const std::string& name() const { return name_; }
  std::string peer_ip() const { return "10.213." + std::to_string(subnet_) + ".2"; }  // inside the namespace
  std::string local_ip() const { return "10.213." + std::to_string(subnet_) + ".1"; }  // our end
  // Cuts or restores the link (our end of the veth pair).
  bool SetLinkUp(bool up);
  // Limits what the namespace sends to us (tc tbf on its end); false where
  // traffic control is unavailable.
  bool ThrottlePeerEgress(const std::string& rate);

 private:
  std::string name_;
  std::string veth_;
  int subnet_ = 0;
  std::string unavailable_;
};

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_NETNS_H_
