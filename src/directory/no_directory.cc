// The directory in a build without libcurl: the option is refused clearly.
#include "common/logging.h"
#include "directory/directory.h"

namespace lldd {

Result MakeDirectory(const Directory::Config&, Directory::DepartedFn, std::unique_ptr<Directory>*) {
  return Result::FeatureNotEnabled(
      "this build has no etcd directory (it was built without libcurl; Debian: apt-get install libcurl4-openssl-dev)");
}

}  // namespace lldd
