#include "common/rdma_devices.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace lldd {
namespace {

TEST(RdmaDevices, AnEntryInTheKernelsListIsADevice) {
  char dir[] = "/tmp/rdma_devices_test.XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  EXPECT_FALSE(HasRdmaDevice(dir));  // empty: "." and ".." only
  const std::string dev = std::string(dir) + "/mlx5_0";
  ASSERT_EQ(::mkdir(dev.c_str(), 0700), 0);
  EXPECT_TRUE(HasRdmaDevice(dir));
  ::rmdir(dev.c_str());
  ::rmdir(dir);
  EXPECT_FALSE(HasRdmaDevice("/nonexistent/infiniband"));
}

}  // namespace
}  // namespace lldd
