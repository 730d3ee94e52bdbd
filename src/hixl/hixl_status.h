// The HIXL status a library Result becomes, for both front ends (hixl::Hixl
// and adxl::AdxlEngine).
#ifndef LLM_DATADIST_SRC_HIXL_HIXL_STATUS_H_
#define LLM_DATADIST_SRC_HIXL_HIXL_STATUS_H_

#include "common/result.h"
#include "hixl/hixl_types.h"

namespace lldd::hixl_impl {

::hixl::Status ToHixlStatus(const Result& r);
// Logs a failure of `api` with its reason, keeps it as the thread's last
// error, and returns its HIXL status.
::hixl::Status ReportHixl(const char* api, const Result& r);

}  // namespace lldd::hixl_impl

#endif  // LLM_DATADIST_SRC_HIXL_HIXL_STATUS_H_
