// adxl::AdxlEngine: the older name of the HIXL engine (hixl/hixl.h), kept
// by the vendor for code that compiles against it (Mooncake's Transfer
// Engine, among others). It is a thin shell over hixl::Hixl: the same
// engine, data paths, contract and status codes; hixl.h documents each
// method. Where it differs:
//  - no ConnectAsync/DisconnectAsync and one GetTransferStatus overload,
//    as in the vendor's header;
//  - MallocMem/ExportToShareableHandle/FreeMem: memory the library
//    allocates for the caller. Registered, it is shared rather than copied
//    through: a peer on this host maps the same pages (shm for host
//    memory, cuda_ipc for GPU memory), which makes small transfers cheaper
//    than with memory from elsewhere.
//
// Thread safety: as hixl::Hixl; the static methods may be called from any
// thread, before Initialize too.
#ifndef LLM_DATADIST_INCLUDE_ADXL_ADXL_ENGINE_H_
#define LLM_DATADIST_INCLUDE_ADXL_ADXL_ENGINE_H_

#include <map>
#include <memory>
#include <vector>

#include "adxl/adxl_types.h"

namespace hixl {
class Hixl;
}

namespace adxl {

class ASCEND_FUNC_VISIBILITY AdxlEngine {
 public:
  AdxlEngine();
  ~AdxlEngine();  // finalizes if still initialized
  AdxlEngine(const AdxlEngine&) = delete;
  AdxlEngine& operator=(const AdxlEngine&) = delete;

  Status Initialize(const AscendString& local_engine, const std::map<AscendString, AscendString>& options);
  void Finalize();

  Status RegisterMem(const MemDesc& mem, MemType type, MemHandle& mem_handle);
  Status DeregisterMem(MemHandle mem_handle);

  Status Connect(const AscendString& remote_engine, int32_t timeout_in_millis = 1000);
  Status Disconnect(const AscendString& remote_engine, int32_t timeout_in_millis = 1000);

  Status TransferSync(const AscendString& remote_engine, TransferOp operation,
                      const std::vector<TransferOpDesc>& op_descs, int32_t timeout_in_millis = 1000);
  Status TransferAsync(const AscendString& remote_engine, TransferOp operation,
                       const std::vector<TransferOpDesc>& op_descs, const TransferArgs& optional_args,
                       TransferReq& req);
  Status GetTransferStatus(const TransferReq& req, TransferStatus& status);

  Status SendNotify(const AscendString& remote_engine, const NotifyDesc& notify, int32_t timeout_in_millis = 1000);
  Status GetNotifies(std::vector<NotifyDesc>& notifies);

  // `size` bytes (rounded up to whole pages), zero-filled, page-aligned.
  // MEM_HOST: shareable host memory. MEM_DEVICE: GPU memory of the current
  // device (FAILED where there is no usable GPU). Anything else, a zero
  // size or a null `ptr`: PARAM_INVALID.
  static Status MallocMem(MemType type, size_t size, void** ptr);
  // `addr` must be what MallocMem returned (not an address inside it) and
  // not freed, else PARAM_INVALID. The same memory gives the same handle.
  static Status ExportToShareableHandle(void* addr, ShareableHandle& handle);
  // PARAM_INVALID unless `ptr` came from MallocMem and is not freed yet.
  // Registrations on the memory keep it mapped until they are deregistered.
  static Status FreeMem(void* ptr);

  // As Hixl::GetCapability.
  static Status GetCapability(FeatureType feature_type, int32_t& value);

 private:
  std::unique_ptr<hixl::Hixl> hixl_;
};

}  // namespace adxl

#endif  // LLM_DATADIST_INCLUDE_ADXL_ADXL_ENGINE_H_
