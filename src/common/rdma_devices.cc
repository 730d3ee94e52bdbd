#include "common/rdma_devices.h"

#include <dirent.h>

namespace lldd {

bool HasRdmaDevice(const char* sysfs_dir) {
  DIR* dir = ::opendir(sysfs_dir);
  if (dir == nullptr) return false;
  bool found = false;
  while (dirent* e = ::readdir(dir))
    if (e->d_name[0] != '.') found = true;
  ::closedir(dir);
  return found;
}

}  // namespace lldd
