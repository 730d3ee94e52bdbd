// adxl::AdxlEngine: the older name of the HIXL engine (hixl/hixl.h), kept
// by the vendor for code that compiles against it (Mooncake's Transfer
// Engine, among others). It is a hixl::Hixl: the same engine, data paths,
// contract and status codes, and hixl.h documents each method. Beyond the
// vendor's adxl header it also has Hixl's ConnectAsync, DisconnectAsync
// and batch GetTransferStatus. What it adds is memory the library
// allocates for the caller (MallocMem): registered, it is shared rather
// than copied through, since a peer on this host maps the same pages (shm
// for host memory, cuda_ipc for GPU memory), which makes transfers of it
// cheaper than of memory from elsewhere.
//
// Thread safety: as hixl::Hixl; the static methods may be called from any
// thread, before Initialize too.
#ifndef LLM_DATADIST_INCLUDE_ADXL_ADXL_ENGINE_H_
#define LLM_DATADIST_INCLUDE_ADXL_ADXL_ENGINE_H_

#include <cstddef>

#include "adxl/adxl_types.h"
#include "hixl/hixl.h"

namespace adxl {

class ASCEND_FUNC_VISIBILITY AdxlEngine : public hixl::Hixl {
 public:
  // `size` bytes (rounded up to whole pages), zero-filled, page-aligned.
  // MEM_HOST: shareable host memory. MEM_DEVICE: GPU memory of the calling
  // thread's current device (FAILED where there is no usable GPU).
  // Anything else, a zero size or a null `ptr`: PARAM_INVALID.
  static Status MallocMem(MemType type, size_t size, void** ptr);
  // `addr` must be what MallocMem returned (not an address inside it) and
  // not freed, else PARAM_INVALID. The same memory gives the same handle.
  static Status ExportToShareableHandle(void* addr, ShareableHandle& handle);
  // PARAM_INVALID unless `ptr` came from MallocMem and is not freed yet.
  // Registrations on the memory keep it mapped until they are deregistered.
  static Status FreeMem(void* ptr);
};

}  // namespace adxl

#endif  // LLM_DATADIST_INCLUDE_ADXL_ADXL_ENGINE_H_
