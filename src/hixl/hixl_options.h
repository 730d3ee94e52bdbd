// The HIXL Initialize options, validated and mapped onto the engine's.
//
// Every vendor key is accepted with the values the vendor documents; those
// that configure Ascend hardware we do not have (fabric memory, RDMA
// traffic class and service level, the staging buffer pool, device
// communication resources) are checked and then have no effect, which is
// logged once. comm_resource_config.protocol_desc picks the data paths:
// same-host device protocols (hccs, ub) leave the engine's own choice per
// link (shm or cuda_ipc on one host, else the network); RDMA protocols
// (roce) choose ucx when this build has it, else tcp.
// The adxl API's spellings of the keys ("adxl.BufferPool", ...) are the
// same options, in either front end, as in the vendor's library.
// Our own engine options ("llm.*", e.g. llm.TransferBackend) pass through.
// An unknown key or a malformed value is PARAM_INVALID naming the key.
#ifndef LLM_DATADIST_SRC_HIXL_HIXL_OPTIONS_H_
#define LLM_DATADIST_SRC_HIXL_HIXL_OPTIONS_H_

#include <string>

#include "engine/options.h"

namespace lldd::hixl_impl {

// Ours: the deadline of each TransferAsync request, in milliseconds from
// its submission (the vendor's API has none: its user disconnects a peer
// whose requests take too long; ours also end as TIMEOUT by themselves).
constexpr const char kOptionAsyncTimeout[] = "llm.HixlAsyncTimeoutMs";
constexpr int64_t kDefaultAsyncTimeoutMs = 60000;

struct HixlOptions {
  OptionMap engine;           // for Engine::Initialize (listen address added by the caller)
  bool auto_connect = false;  // OPTION_AUTO_CONNECT=1: transfers connect on first use
  // ConnectAsync/DisconnectAsync workers (GlobalResourceConfig connect_pool.*).
  uint32_t connect_threads = 2;
  uint32_t connect_queue = 128;
  int64_t async_timeout_ms = kDefaultAsyncTimeoutMs;
  std::string summary;        // what was chosen, for the log
};

Result ParseHixlOptions(const OptionMap& options, HixlOptions* out);

}  // namespace lldd::hixl_impl

#endif  // LLM_DATADIST_SRC_HIXL_HIXL_OPTIONS_H_
