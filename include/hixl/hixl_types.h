// Types, constants and status codes of the HIXL API (namespace hixl): the
// vendor's names and values, so code written for the vendor's library
// compiles unchanged against ours. See hixl.h for the engine itself.
//
// C++17; no dependency beyond the standard library and our ge::AscendString.
#ifndef LLM_DATADIST_INCLUDE_HIXL_HIXL_TYPES_H_
#define LLM_DATADIST_INCLUDE_HIXL_HIXL_TYPES_H_

#include <cstddef>
#include <cstdint>
// Code written against the vendor's headers gets std::cout/std::cerr from
// them (the vendor's own examples use std::cerr without including
// <iostream>), so ours provide them too.
#include <iostream>
#include <string>

#include "llm_datadist/ge_types.h"

#ifndef ASCEND_FUNC_VISIBILITY
#define ASCEND_FUNC_VISIBILITY __attribute__((visibility("default")))
#endif

namespace hixl {

using Status = uint32_t;
using AscendString = ge::AscendString;
// An asynchronous transfer, as TransferAsync hands it out.
using TransferReq = void*;
// A registration, as RegisterMem hands it out.
using MemHandle = void*;

// Option keys of Initialize.
constexpr const char OPTION_ENABLE_USE_FABRIC_MEM[] = "EnableUseFabricMem";
constexpr const char OPTION_RDMA_TRAFFIC_CLASS[] = "RdmaTrafficClass";
constexpr const char OPTION_RDMA_SERVICE_LEVEL[] = "RdmaServiceLevel";
constexpr const char OPTION_BUFFER_POOL[] = "BufferPool";
constexpr const char OPTION_GLOBAL_RESOURCE_CONFIG[] = "GlobalResourceConfig";
constexpr const char OPTION_AUTO_CONNECT[] = "AutoConnect";
constexpr const char OPTION_LOCAL_COMM_RES[] = "LocalCommRes";

// Status codes.
constexpr Status SUCCESS = 0U;
constexpr Status PARAM_INVALID = 103900U;
constexpr Status TIMEOUT = 103901U;
constexpr Status NOT_CONNECTED = 103902U;
constexpr Status ALREADY_CONNECTED = 103903U;
constexpr Status NOTIFY_FAILED = 103904U;
constexpr Status UNSUPPORTED = 103905U;
constexpr Status RESOURCE_EXHAUSTED = 203900U;
constexpr Status FAILED = 503900U;

// Capabilities GetCapability answers about. The values are fixed; new
// ones are only ever appended.
enum FeatureType : int32_t {
  AUTO_CONNECT = 0,
  CLIENT_SERVER_COMM = 1,
};
constexpr int32_t FEATURE_SUPPORTED = 1;
constexpr int32_t FEATURE_NOT_SUPPORTED = 0;

enum MemType { MEM_DEVICE, MEM_HOST };

// READ: remote -> local. WRITE: local -> remote.
enum TransferOp { READ, WRITE };

struct MemDesc {
  uintptr_t addr;
  size_t len;
  uint8_t reserved[128] = {};
};

struct TransferOpDesc {
  uintptr_t local_addr;
  uintptr_t remote_addr;
  size_t len;
};

enum class TransferStatus { WAITING, COMPLETED, TIMEOUT, FAILED };

struct TransferArgs {
  const void* user_data = nullptr;  // echoed back by GetTransferStatus
  uint8_t reserved[120] = {};
};

struct GetTransferStatusArgs {
  uint32_t max_query_count = UINT32_MAX;
  bool skip_waiting = false;
  uint8_t reserved[123] = {};
};

struct TransferResult {
  TransferReq req = nullptr;
  const void* user_data = nullptr;
  TransferStatus status = TransferStatus::WAITING;
  uint8_t reserved[108] = {};
};

struct NotifyDesc {
  AscendString name;
  AscendString notify_msg;
};

enum class AsyncConnectStatus {
  NOT_CONNECT,
  CONNECT_PENDING,
  CONNECTING,
  CONNECTED,
  CONNECT_FAILED,
  DISCONNECT_PENDING,
  DISCONNECTING
};

}  // namespace hixl

#endif  // LLM_DATADIST_INCLUDE_HIXL_HIXL_TYPES_H_
