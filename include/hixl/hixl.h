// The HIXL API: an engine of registered memory and one-sided reads and
// writes by address, named after the vendor's (namespace hixl, class Hixl)
// so that code written for it compiles unchanged. It runs on the same
// engine, data paths (shm, tcp, cuda_ipc, ucx) and region table as
// LlmDataDist.
//
// An engine is named by "ip:port" (a server: it listens on that port) or
// "ip" (a client only); IPv6 as "[addr]:port" or "[addr]". A client
// Connect()s to a server by the name the server initialized with, then
// reads or writes the server's registered memory by address: every remote
// range must lie wholly inside one of the peer's registrations and every
// local range inside one of ours, else the call is PARAM_INVALID and no
// byte moves. Memory registered after Connect is reachable too.
//
// Thread safety: every method may be called from several threads at once,
// except Initialize and Finalize.
#ifndef LLM_DATADIST_INCLUDE_HIXL_HIXL_H_
#define LLM_DATADIST_INCLUDE_HIXL_HIXL_H_

#include <map>
#include <memory>
#include <vector>

#include "hixl/hixl_types.h"

namespace hixl {

class ASCEND_FUNC_VISIBILITY Hixl {
 public:
  Hixl();
  ~Hixl();  // finalizes if still initialized
  Hixl(const Hixl&) = delete;
  Hixl& operator=(const Hixl&) = delete;

  // Must precede every other call. `local_engine` names this engine (see
  // above); `options` take the OPTION_* keys.
  Status Initialize(const AscendString& local_engine, const std::map<AscendString, AscendString>& options);
  // Closes every connection and forgets every registration.
  void Finalize();

  // Makes [mem.addr, mem.addr + mem.len) reachable by connected peers and
  // usable as local memory of transfers. The same (addr, len) again gives
  // back the same handle.
  Status RegisterMem(const MemDesc& mem, MemType type, MemHandle& mem_handle);
  // Waits until no transfer uses the memory; afterwards the caller may free
  // it. An unknown (non-null) handle is SUCCESS and does nothing.
  Status DeregisterMem(MemHandle mem_handle);

  Status Connect(const AscendString& remote_engine, int32_t timeout_in_millis = 1000);
  Status Disconnect(const AscendString& remote_engine, int32_t timeout_in_millis = 1000);
  // Queued on a pool of GlobalResourceConfig connect_pool.thread_num
  // threads (default 2) and task_queue_capacity tasks (default 128; full:
  // RESOURCE_EXHAUSTED); tasks for one remote run in order.
  // GetAsyncConnectStatus gives the state of the latest task per remote
  // (NOT_CONNECT for one never named).
  Status ConnectAsync(const AscendString& remote_engine, int32_t timeout_in_millis = 1000);
  Status DisconnectAsync(const AscendString& remote_engine, int32_t timeout_in_millis = 1000);
  Status GetAsyncConnectStatus(const AscendString& remote_engine, AsyncConnectStatus& status);
  Status GetAsyncConnectStatus(std::map<AscendString, AsyncConnectStatus>& statuses);

  // All of `op_descs` moved (READ: remote -> local, WRITE: local -> remote)
  // before the timeout, or an error; after an error the destination ranges
  // may hold part of the data, but no byte lands after the call returns.
  Status TransferSync(const AscendString& remote_engine, TransferOp operation,
                      const std::vector<TransferOpDesc>& op_descs, int32_t timeout_in_millis = 1000);
  // Checked at once (out-of-region: PARAM_INVALID), then moved by a pool of
  // worker threads before the request's deadline (our option
  // llm.HixlAsyncTimeoutMs, default 60000 ms): TIMEOUT after it, with no
  // byte landing later. Disconnect, Finalize or a dead peer end outstanding
  // requests as FAILED. A finished request is reported once (either
  // GetTransferStatus), then its handle is released.
  Status TransferAsync(const AscendString& remote_engine, TransferOp operation,
                       const std::vector<TransferOpDesc>& op_descs, const TransferArgs& optional_args,
                       TransferReq& req);
  Status GetTransferStatus(const TransferReq& req, TransferStatus& status);
  Status GetTransferStatus(const GetTransferStatusArgs& args, std::vector<TransferResult>& results);

  // A small named message (name and notify_msg of at most 1024 characters)
  // to a connected engine, delivered after every transfer to it that was
  // started before; the receiver keeps at most 4096 unconsumed ones per
  // connection (beyond: NOTIFY_FAILED). GetNotifies takes every received
  // one, in arrival order.
  Status SendNotify(const AscendString& remote_engine, const NotifyDesc& notify, int32_t timeout_in_millis = 1000);
  Status GetNotifies(std::vector<NotifyDesc>& notifies);

  // `value` is FEATURE_SUPPORTED or FEATURE_NOT_SUPPORTED (also for a
  // feature this library does not know).
  static Status GetCapability(FeatureType feature_type, int32_t& value);

 private:
  class HixlImpl;
  std::unique_ptr<HixlImpl> impl_;
};

}  // namespace hixl

#endif  // LLM_DATADIST_INCLUDE_HIXL_HIXL_H_
