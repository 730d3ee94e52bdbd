// The hixl_test_peer program (tests/hixl_peer.h): IN_FD OUT_FD [KEY=VALUE ...].
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "tests/hixl_peer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s IN_FD OUT_FD [KEY=VALUE ...]\n", argv[0]);
    return 2;
  }
  std::map<std::string, std::string> options;
  for (int i = 3; i < argc; ++i) {
    const std::string kv = argv[i];
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) return 2;
    options[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return lldd_test::ServeHixlCommands(options, std::atoi(argv[1]), std::atoi(argv[2]));
}
