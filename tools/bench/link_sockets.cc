#include "bench/link_sockets.h"

#include <dirent.h>
#include <cstdio>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace lldd_bench {

int CountConnectionsTo(uint16_t remote_port) {
  std::set<uint64_t> inodes;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* e = readdir(dir)) {
    char target[128];
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = 0;
    unsigned long long inode;
    if (std::sscanf(target, "socket:[%llu]", &inode) == 1) inodes.insert(inode);
  }
  closedir(dir);
  int count = 0;
  bool read_any = false;
  for (const char* table : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
    std::ifstream in(table);
    if (!in) continue;
    read_any = true;
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      std::istringstream f(line);
      std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout;
      uint64_t inode = 0;
      if (!(f >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode)) continue;
      if (state != "01" || inodes.count(inode) == 0) continue;  // 01: ESTABLISHED
      const size_t colon = remote.rfind(':');
      if (colon == std::string::npos) continue;
      if (std::stoul(remote.substr(colon + 1), nullptr, 16) == remote_port) ++count;
    }
  }
  return read_any ? count : -1;
}

}  // namespace lldd_bench
