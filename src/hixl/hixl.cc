// hixl::Hixl: a thin shell over HixlEngine that turns Results into the
// HIXL status codes, logging every failure with its reason.
#include "hixl/hixl.h"

#include "common/logging.h"
#include "hixl/hixl_engine.h"
#include "hixl/hixl_status.h"

namespace hixl {
namespace {

using lldd::Result;

Status Report(const char* api, const Result& r) { return lldd::hixl_impl::ReportHixl(api, r); }

}  // namespace

class Hixl::HixlImpl {
 public:
  lldd::hixl_impl::HixlEngine engine;
};

Hixl::Hixl() : impl_(std::make_unique<HixlImpl>()) {}
Hixl::~Hixl() = default;

Status Hixl::Initialize(const AscendString& local_engine, const std::map<AscendString, AscendString>& options) {
  return Report("Initialize", impl_->engine.Initialize(local_engine.GetString(), options));
}

void Hixl::Finalize() { impl_->engine.Finalize(); }

Status Hixl::RegisterMem(const MemDesc& mem, MemType type, MemHandle& mem_handle) {
  int64_t id = 0;
  Result r = impl_->engine.RegisterMem(mem.addr, mem.len, type, &id);
  if (r.ok()) mem_handle = reinterpret_cast<MemHandle>(static_cast<uintptr_t>(id));
  return Report("RegisterMem", r);
}

Status Hixl::DeregisterMem(MemHandle mem_handle) {
  if (mem_handle == nullptr) return Report("DeregisterMem", Result::ParamInvalid("mem_handle is null"));
  return Report("DeregisterMem",
                impl_->engine.DeregisterMem(static_cast<int64_t>(reinterpret_cast<uintptr_t>(mem_handle))));
}

Status Hixl::Connect(const AscendString& remote_engine, int32_t timeout_in_millis) {
  return Report("Connect", impl_->engine.Connect(remote_engine.GetString(), timeout_in_millis));
}

Status Hixl::Disconnect(const AscendString& remote_engine, int32_t timeout_in_millis) {
  return Report("Disconnect", impl_->engine.Disconnect(remote_engine.GetString(), timeout_in_millis));
}

Status Hixl::ConnectAsync(const AscendString& remote_engine, int32_t timeout_in_millis) {
  return Report("ConnectAsync", impl_->engine.ConnectAsync(remote_engine.GetString(), timeout_in_millis));
}

Status Hixl::DisconnectAsync(const AscendString& remote_engine, int32_t timeout_in_millis) {
  return Report("DisconnectAsync", impl_->engine.DisconnectAsync(remote_engine.GetString(), timeout_in_millis));
}

Status Hixl::GetAsyncConnectStatus(const AscendString& remote_engine, AsyncConnectStatus& status) {
  return Report("GetAsyncConnectStatus", impl_->engine.AsyncStatus(remote_engine.GetString(), &status));
}

Status Hixl::GetAsyncConnectStatus(std::map<AscendString, AsyncConnectStatus>& statuses) {
  std::map<std::string, AsyncConnectStatus> all;
  Result r = impl_->engine.AsyncStatuses(&all);
  if (r.ok()) {
    statuses.clear();
    for (const auto& [name, status] : all) statuses[AscendString(name.c_str())] = status;
  }
  return Report("GetAsyncConnectStatus", r);
}

Status Hixl::TransferSync(const AscendString& remote_engine, TransferOp operation,
                          const std::vector<TransferOpDesc>& op_descs, int32_t timeout_in_millis) {
  return Report("TransferSync",
                impl_->engine.TransferSync(remote_engine.GetString(), operation, op_descs, timeout_in_millis));
}

Status Hixl::TransferAsync(const AscendString& remote_engine, TransferOp operation,
                           const std::vector<TransferOpDesc>& op_descs, const TransferArgs& optional_args,
                           TransferReq& req) {
  uint64_t id = 0;
  Result r = impl_->engine.TransferAsync(remote_engine.GetString(), operation, op_descs, optional_args.user_data, &id);
  if (r.ok()) req = reinterpret_cast<TransferReq>(static_cast<uintptr_t>(id));
  return Report("TransferAsync", r);
}

Status Hixl::GetTransferStatus(const TransferReq& req, TransferStatus& status) {
  if (req == nullptr) return Report("GetTransferStatus", Result::ParamInvalid("req is null"));
  return Report("GetTransferStatus",
                impl_->engine.TransferStatusOf(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(req)), &status));
}

Status Hixl::GetTransferStatus(const GetTransferStatusArgs& args, std::vector<TransferResult>& results) {
  return Report("GetTransferStatus", impl_->engine.TransferStatuses(args, &results));
}
Status Hixl::SendNotify(const AscendString& remote_engine, const NotifyDesc& notify, int32_t timeout_in_millis) {
  const Result r = impl_->engine.SendNotify(remote_engine.GetString(),
                                            {std::string(notify.name.GetString(), notify.name.GetLength()),
                                             std::string(notify.notify_msg.GetString(), notify.notify_msg.GetLength())}, timeout_in_millis);
  const Status st = Report("SendNotify", r);
  // A notification that did not arrive for another reason than the
  // caller's arguments, the connection or the time: NOTIFY_FAILED.
  return st == FAILED || st == RESOURCE_EXHAUSTED || st == UNSUPPORTED ? NOTIFY_FAILED : st;
}

Status Hixl::GetNotifies(std::vector<NotifyDesc>& notifies) {
  std::vector<lldd::hixl_impl::Notification> got;
  const Result r = impl_->engine.GetNotifies(&got);
  if (r.ok()) {
    notifies.clear();
    for (const auto& n : got) notifies.push_back({AscendString(n.name.c_str(), n.name.size()),
                                                  AscendString(n.message.c_str(), n.message.size())});
  }
  return Report("GetNotifies", r);
}

Status Hixl::GetCapability(FeatureType feature_type, int32_t& value) {
  if (feature_type < 0)
    return Report("GetCapability", Result::ParamInvalid(lldd::Msg("feature_type ", static_cast<int32_t>(feature_type),
                                                             " is negative")));
  switch (feature_type) {
    case AUTO_CONNECT:  // OPTION_AUTO_CONNECT: transfers connect on first use
      value = FEATURE_SUPPORTED;
      break;
    default:  // CLIENT_SERVER_COMM (the vendor's HixlCS API) and unknown ones
      value = FEATURE_NOT_SUPPORTED;
      break;
  }
  return SUCCESS;
}

}  // namespace hixl
