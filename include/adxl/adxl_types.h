// Types, constants and status codes of the adxl API (namespace adxl), the
// older name of the HIXL API that Mooncake's Transfer Engine and other
// serving stacks compile against. The types and status codes are HIXL's
// (hixl/hixl_types.h), by alias; only the option keys differ, carrying the
// "adxl." prefix. Both engines accept both spellings.
//
// C++17; no dependency beyond the standard library and our ge::AscendString.
#ifndef LLM_DATADIST_INCLUDE_ADXL_ADXL_TYPES_H_
#define LLM_DATADIST_INCLUDE_ADXL_ADXL_TYPES_H_

#include <cstdint>

#include "hixl/hixl_types.h"

namespace adxl {

using Status = hixl::Status;
using AscendString = hixl::AscendString;
using TransferReq = hixl::TransferReq;
using MemHandle = hixl::MemHandle;

// Option keys of Initialize.
constexpr const char OPTION_RDMA_TRAFFIC_CLASS[] = "adxl.RdmaTrafficClass";
constexpr const char OPTION_RDMA_SERVICE_LEVEL[] = "adxl.RdmaServiceLevel";
constexpr const char OPTION_BUFFER_POOL[] = "adxl.BufferPool";
constexpr const char OPTION_LOCAL_COMM_RES[] = "adxl.LocalCommRes";
using hixl::OPTION_AUTO_CONNECT;  // the same key in both APIs

// Status codes.
using hixl::ALREADY_CONNECTED;
using hixl::FAILED;
using hixl::NOT_CONNECTED;
using hixl::NOTIFY_FAILED;
using hixl::PARAM_INVALID;
using hixl::RESOURCE_EXHAUSTED;
using hixl::SUCCESS;
using hixl::TIMEOUT;
using hixl::UNSUPPORTED;

using FeatureType = hixl::FeatureType;
using hixl::AUTO_CONNECT;
using hixl::CLIENT_SERVER_COMM;
using hixl::FEATURE_NOT_SUPPORTED;
using hixl::FEATURE_SUPPORTED;

using MemType = hixl::MemType;
using hixl::MEM_DEVICE;
using hixl::MEM_HOST;

using TransferOp = hixl::TransferOp;
using hixl::READ;
using hixl::WRITE;

using MemDesc = hixl::MemDesc;
using TransferOpDesc = hixl::TransferOpDesc;
using TransferStatus = hixl::TransferStatus;
using TransferArgs = hixl::TransferArgs;
using NotifyDesc = hixl::NotifyDesc;

// What ExportToShareableHandle gives for memory from MallocMem, for
// another process on this host to map the same physical memory. The
// vendor's is an Ascend fabric handle; ours names a file descriptor of the
// exporting process, which stays valid until FreeMem (and while the
// memory is registered):
//  - host memory (a memfd): open(path, O_RDWR), then mmap(size, MAP_SHARED);
//  - GPU memory (a CUDA VMM handle of type POSIX fd): pidfd_getfd(pid, fd),
//    then cuMemImportFromShareableHandle and cuMemMap.
// The opener needs the same rights over the exporter as ptrace does.
struct ShareableHandle {
  char path[64];     // "/proc/<pid>/fd/<fd>", NUL-terminated
  int32_t pid;
  int32_t fd;
  uint64_t size;     // bytes to map: the allocation rounded up to pages
  MemType mem_type;  // MEM_HOST or MEM_DEVICE
  uint8_t reserved[44];
};

}  // namespace adxl

#endif  // LLM_DATADIST_INCLUDE_ADXL_ADXL_TYPES_H_
