// llm_datadist_test_peer: the server side of the cross-process tests, run by
// lldd_test::ForkedServer as
//   llm_datadist_test_peer CLUSTER_ID IN_FD OUT_FD [KEY=VALUE ...]
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "tests/test_peer.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s CLUSTER_ID IN_FD OUT_FD [KEY=VALUE ...]\n", argv[0]);
    return 2;
  }
  std::map<std::string, std::string> options;
  for (int i = 4; i < argc; ++i) {
    const std::string kv = argv[i];
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "%s: option '%s' is not KEY=VALUE\n", argv[0], argv[i]);
      return 2;
    }
    options[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  lldd_test::ServeCommands(std::strtoull(argv[1], nullptr, 10), options, std::atoi(argv[2]), std::atoi(argv[3]));
}
