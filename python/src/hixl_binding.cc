// The native half of the `hixl` Python package: the vendor's Python HIXL API
// over our C++ hixl::Hixl (include/hixl/hixl.h).
//
// Built as hixl/hixl.<abi>.so, the path the vendor's wheel uses, so both
// `import hixl` and `from hixl.hixl import ...` work. The conventions are
// the vendor module's: statuses are plain ints; calls with an output return
// (status, output); an engine that is not initialized (or finalized) answers
// FAILED with an empty output; a second initialize() is a no-op SUCCESS;
// addresses, handles, request ids and user_data are ints.
//
// Every call into the engine releases the GIL (arguments are converted
// before, results after), so other Python threads run while one waits on a
// peer, a deadline or a registration.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "hixl/hixl.h"

namespace py = pybind11;
using namespace hixl;

namespace {

using Release = py::call_guard<py::gil_scoped_release>;
constexpr int32_t kDefaultTimeoutMs = 1000;  // the vendor's default for every timeout_in_millis

AscendString Str(const std::string& s) { return AscendString(s.c_str(), s.size()); }
std::string Str(const AscendString& s) { return std::string(s.GetString(), s.GetLength()); }
// A peer's notification text need not be UTF-8: undecodable bytes become
// U+FFFD instead of an exception on attribute access.
py::object Text(const AscendString& s) { return py::bytes(Str(s)).attr("decode")("utf-8", "replace"); }
template <typename T>
uintptr_t Int(T* p) { return reinterpret_cast<uintptr_t>(p); }

std::string Hex(uintptr_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

class PyHixl {
 public:
  ~PyHixl() {
    // The last reference may go while the engine still has peers; its
    // finalize can wait on them, and must not hold up other threads.
    py::gil_scoped_release release;
    Finalize();
  }

  Status Initialize(const std::string& local_engine, const std::map<std::string, std::string>& options) {
    std::lock_guard<std::mutex> lock(life_mu_);
    if (live_) return SUCCESS;
    std::map<AscendString, AscendString> opts;
    for (const auto& [k, v] : options) opts.emplace(Str(k), Str(v));
    const Status st = engine_.Initialize(Str(local_engine), opts);
    live_ = st == SUCCESS;
    return st;
  }

  void Finalize() {
    std::lock_guard<std::mutex> lock(life_mu_);
    if (!live_) return;
    live_ = false;  // new calls answer FAILED; running ones finish first (Finalize waits for them)
    engine_.Finalize();
  }

  std::pair<Status, uintptr_t> RegisterMem(const MemDesc& mem, MemType type) {
    MemHandle handle = nullptr;
    if (!live_) return {FAILED, 0};
    const Status st = engine_.RegisterMem(mem, type, handle);
    return {st, st == SUCCESS ? Int(handle) : 0};
  }

  Status DeregisterMem(uintptr_t handle) {
    return live_ ? engine_.DeregisterMem(reinterpret_cast<MemHandle>(handle)) : FAILED;
  }

  Status Connect(const std::string& remote, int32_t timeout_ms) {
    return live_ ? engine_.Connect(Str(remote), timeout_ms) : FAILED;
  }
  Status Disconnect(const std::string& remote, int32_t timeout_ms) {
    return live_ ? engine_.Disconnect(Str(remote), timeout_ms) : FAILED;
  }
  Status ConnectAsync(const std::string& remote, int32_t timeout_ms) {
    return live_ ? engine_.ConnectAsync(Str(remote), timeout_ms) : FAILED;
  }
  Status DisconnectAsync(const std::string& remote, int32_t timeout_ms) {
    return live_ ? engine_.DisconnectAsync(Str(remote), timeout_ms) : FAILED;
  }

  std::pair<Status, AsyncConnectStatus> GetAsyncConnectStatus(const std::string& remote) {
    AsyncConnectStatus status = AsyncConnectStatus::NOT_CONNECT;
    if (!live_) return {FAILED, status};
    const Status st = engine_.GetAsyncConnectStatus(Str(remote), status);
    return {st, status};
  }

  std::pair<Status, std::map<std::string, AsyncConnectStatus>> GetAllAsyncConnectStatus() {
    std::map<std::string, AsyncConnectStatus> out;
    if (!live_) return {FAILED, out};
    std::map<AscendString, AsyncConnectStatus> all;
    const Status st = engine_.GetAsyncConnectStatus(all);
    for (const auto& [name, status] : all) out.emplace(Str(name), status);
    return {st, out};
  }

  Status TransferSync(const std::string& remote, TransferOp op, const std::vector<TransferOpDesc>& descs,
                      int32_t timeout_ms) {
    return live_ ? engine_.TransferSync(Str(remote), op, descs, timeout_ms) : FAILED;
  }

  std::pair<Status, uintptr_t> TransferAsync(const std::string& remote, TransferOp op,
                                             const std::vector<TransferOpDesc>& descs, const TransferArgs& args) {
    TransferReq req = nullptr;
    if (!live_) return {FAILED, 0};
    const Status st = engine_.TransferAsync(Str(remote), op, descs, args, req);
    return {st, st == SUCCESS ? Int(req) : 0};
  }

  // FAILED unless the engine says otherwise: an unknown or null request
  // has no state of its own to report.
  std::pair<Status, TransferStatus> GetTransferStatus(uintptr_t req) {
    TransferStatus status = TransferStatus::FAILED;
    if (!live_) return {FAILED, status};
    const Status st = engine_.GetTransferStatus(reinterpret_cast<TransferReq>(req), status);
    return {st, status};
  }

  std::pair<Status, std::vector<TransferResult>> GetAllTransferStatus(const GetTransferStatusArgs& args) {
    std::vector<TransferResult> results;
    if (!live_) return {FAILED, results};
    const Status st = engine_.GetTransferStatus(args, results);
    return {st, results};
  }

  Status SendNotify(const std::string& remote, const NotifyDesc& notify, int32_t timeout_ms) {
    return live_ ? engine_.SendNotify(Str(remote), notify, timeout_ms) : FAILED;
  }

  std::pair<Status, std::vector<NotifyDesc>> GetNotifies() {
    std::vector<NotifyDesc> notifies;
    if (!live_) return {FAILED, notifies};
    const Status st = engine_.GetNotifies(notifies);
    return {st, notifies};
  }

 private:
  std::mutex life_mu_;  // initialize/finalize only; the engine guards its own calls
  std::atomic<bool> live_{false};
  Hixl engine_;
};

std::pair<Status, int32_t> GetCapability(FeatureType feature) {
  int32_t value = FEATURE_NOT_SUPPORTED;
  const Status st = Hixl::GetCapability(feature, value);
  return {st, value};
}

void AddConstants(py::module_& m) {
  for (const auto& [name, value] : std::vector<std::pair<const char*, Status>>{
           {"SUCCESS", SUCCESS}, {"PARAM_INVALID", PARAM_INVALID}, {"TIMEOUT", TIMEOUT},
           {"NOT_CONNECTED", NOT_CONNECTED}, {"ALREADY_CONNECTED", ALREADY_CONNECTED},
           {"NOTIFY_FAILED", NOTIFY_FAILED}, {"UNSUPPORTED", UNSUPPORTED}, {"FAILED", FAILED},
           {"RESOURCE_EXHAUSTED", RESOURCE_EXHAUSTED}})
    m.attr(name) = value;
  for (const auto& [name, value] : std::vector<std::pair<const char*, const char*>>{
           {"OPTION_ENABLE_USE_FABRIC_MEM", OPTION_ENABLE_USE_FABRIC_MEM},
           {"OPTION_RDMA_TRAFFIC_CLASS", OPTION_RDMA_TRAFFIC_CLASS},
           {"OPTION_RDMA_SERVICE_LEVEL", OPTION_RDMA_SERVICE_LEVEL}, {"OPTION_BUFFER_POOL", OPTION_BUFFER_POOL},
           {"OPTION_GLOBAL_RESOURCE_CONFIG", OPTION_GLOBAL_RESOURCE_CONFIG},
           {"OPTION_AUTO_CONNECT", OPTION_AUTO_CONNECT}, {"OPTION_LOCAL_COMM_RES", OPTION_LOCAL_COMM_RES}})
    m.attr(name) = value;
  m.attr("FEATURE_SUPPORTED") = FEATURE_SUPPORTED;
  m.attr("FEATURE_NOT_SUPPORTED") = FEATURE_NOT_SUPPORTED;
}

void AddEnums(py::module_& m) {
  py::enum_<MemType>(m, "MemType").value("MEM_DEVICE", MEM_DEVICE).value("MEM_HOST", MEM_HOST).export_values();
  py::enum_<TransferOp>(m, "TransferOp").value("READ", READ).value("WRITE", WRITE).export_values();
  // Not exported: TIMEOUT and FAILED are the module's status ints.
  py::enum_<TransferStatus>(m, "TransferStatus")
      .value("WAITING", TransferStatus::WAITING)
      .value("COMPLETED", TransferStatus::COMPLETED)
      .value("TIMEOUT", TransferStatus::TIMEOUT)
      .value("FAILED", TransferStatus::FAILED);
  py::enum_<AsyncConnectStatus>(m, "AsyncConnectStatus")
      .value("NOT_CONNECT", AsyncConnectStatus::NOT_CONNECT)
      .value("CONNECT_PENDING", AsyncConnectStatus::CONNECT_PENDING)
      .value("CONNECTING", AsyncConnectStatus::CONNECTING)
      .value("CONNECTED", AsyncConnectStatus::CONNECTED)
      .value("CONNECT_FAILED", AsyncConnectStatus::CONNECT_FAILED)
      .value("DISCONNECT_PENDING", AsyncConnectStatus::DISCONNECT_PENDING)
      .value("DISCONNECTING", AsyncConnectStatus::DISCONNECTING)
      .export_values();
  py::enum_<FeatureType>(m, "FeatureType")
      .value("AUTO_CONNECT", AUTO_CONNECT)
      .value("CLIENT_SERVER_COMM", CLIENT_SERVER_COMM)
      .export_values();
}

void AddStructs(py::module_& m) {
  py::class_<MemDesc>(m, "MemDesc")
      .def(py::init([](uintptr_t addr, size_t len) {
             MemDesc d{};
             d.addr = addr;
             d.len = len;
             return d;
           }),
           py::arg("addr"), py::arg("len"))
      .def_readwrite("addr", &MemDesc::addr)
      .def_readwrite("len", &MemDesc::len)
      .def("__repr__",
           [](const MemDesc& d) { return "MemDesc(addr=" + Hex(d.addr) + ", len=" + std::to_string(d.len) + ")"; });

  py::class_<TransferOpDesc>(m, "TransferOpDesc")
      .def(py::init([](uintptr_t local, uintptr_t remote, size_t len) { return TransferOpDesc{local, remote, len}; }),
           py::arg("local_addr"), py::arg("remote_addr"), py::arg("len"))
      .def_readwrite("local_addr", &TransferOpDesc::local_addr)
      .def_readwrite("remote_addr", &TransferOpDesc::remote_addr)
      .def_readwrite("len", &TransferOpDesc::len)
      .def("__repr__", [](const TransferOpDesc& d) {
        return "TransferOpDesc(local_addr=" + Hex(d.local_addr) + ", remote_addr=" + Hex(d.remote_addr) +
               ", len=" + std::to_string(d.len) + ")";
      });

  // user_data is an opaque int, echoed back in TransferResult.user_data.
  py::class_<TransferArgs>(m, "TransferArgs")
      .def(py::init<>())
      .def_property(
          "user_data", [](const TransferArgs& a) { return Int(a.user_data); },
          [](TransferArgs& a, uintptr_t v) { a.user_data = reinterpret_cast<const void*>(v); });

  py::class_<GetTransferStatusArgs>(m, "GetTransferStatusArgs")
      .def(py::init([](uint32_t max_query_count, bool skip_waiting) {
             GetTransferStatusArgs a;
             a.max_query_count = max_query_count;
             a.skip_waiting = skip_waiting;
             return a;
           }),
           py::arg("max_query_count") = UINT32_MAX, py::arg("skip_waiting") = false)
      .def_readwrite("max_query_count", &GetTransferStatusArgs::max_query_count)
      .def_readwrite("skip_waiting", &GetTransferStatusArgs::skip_waiting);

  py::class_<TransferResult>(m, "TransferResult")
      .def(py::init<>())
      .def_property(
          "req", [](const TransferResult& r) { return Int(r.req); },
          [](TransferResult& r, uintptr_t v) { r.req = reinterpret_cast<TransferReq>(v); })
      .def_property(
          "user_data", [](const TransferResult& r) { return Int(r.user_data); },
          [](TransferResult& r, uintptr_t v) { r.user_data = reinterpret_cast<const void*>(v); })
      .def_readonly("status", &TransferResult::status)
      .def("__repr__", [](const TransferResult& r) {
        return "TransferResult(req=" + std::to_string(Int(r.req)) + ", user_data=" + std::to_string(Int(r.user_data)) +
               ", status=" + std::to_string(static_cast<int>(r.status)) + ")";
      });

  py::class_<NotifyDesc>(m, "NotifyDesc")
      .def(py::init([](const std::string& name, const std::string& msg) { return NotifyDesc{Str(name), Str(msg)}; }),
           py::arg("name"), py::arg("notify_msg"))
      .def_property(
          "name", [](const NotifyDesc& n) { return Text(n.name); },
          [](NotifyDesc& n, const std::string& s) { n.name = Str(s); })
      .def_property(
          "notify_msg", [](const NotifyDesc& n) { return Text(n.notify_msg); },
          [](NotifyDesc& n, const std::string& s) { n.notify_msg = Str(s); })
      .def("__repr__", [](const NotifyDesc& n) {
        return "NotifyDesc(name=" + py::repr(Text(n.name)).cast<std::string>() +
               ", notify_msg=" + py::repr(Text(n.notify_msg)).cast<std::string>() + ")";
      });
}

void AddHixl(py::module_& m) {
  const auto timeout = py::arg("timeout_in_millis") = kDefaultTimeoutMs;
  py::class_<PyHixl>(m, "Hixl")
      .def(py::init<>())
      .def("initialize", &PyHixl::Initialize, py::arg("local_engine"),
           py::arg("options") = std::map<std::string, std::string>{}, Release())
      .def("finalize", &PyHixl::Finalize, Release())
      .def("register_mem", &PyHixl::RegisterMem, py::arg("mem_desc"), py::arg("mem_type"), Release())
      .def("deregister_mem", &PyHixl::DeregisterMem, py::arg("mem_handle"), Release())
      .def("connect", &PyHixl::Connect, py::arg("remote_engine"), timeout, Release())
      .def("disconnect", &PyHixl::Disconnect, py::arg("remote_engine"), timeout, Release())
      .def("connect_async", &PyHixl::ConnectAsync, py::arg("remote_engine"), timeout, Release())
      .def("disconnect_async", &PyHixl::DisconnectAsync, py::arg("remote_engine"), timeout, Release())
      .def("get_async_connect_status", &PyHixl::GetAsyncConnectStatus, py::arg("remote_engine"), Release())
      .def("get_all_async_connect_status", &PyHixl::GetAllAsyncConnectStatus, Release())
      .def("transfer_sync", &PyHixl::TransferSync, py::arg("remote_engine"), py::arg("op"), py::arg("op_descs"),
           timeout, Release())
      .def("transfer_async", &PyHixl::TransferAsync, py::arg("remote_engine"), py::arg("op"), py::arg("op_descs"),
           py::arg("args") = TransferArgs{}, Release())
      .def("get_transfer_status", &PyHixl::GetTransferStatus, py::arg("req"), Release())
      .def("get_all_transfer_status", &PyHixl::GetAllTransferStatus, py::arg("args") = GetTransferStatusArgs{},
           Release())
      .def("send_notify", &PyHixl::SendNotify, py::arg("remote_engine"), py::arg("notify"), timeout, Release())
      .def("get_notifies", &PyHixl::GetNotifies, Release());
  m.def("get_capability", &GetCapability, py::arg("feature_type"));
}

}  // namespace

PYBIND11_MODULE(hixl, m) {
  m.doc() = "HIXL: one-sided transfers between registered memories of engines (llm-datadist)";
  AddConstants(m);
  AddEnums(m);
  AddStructs(m);
  AddHixl(m);
}
