#include "hixl/hixl_status.h"

#include "common/last_error.h"

namespace lldd::hixl_impl {

::hixl::Status ToHixlStatus(const Result& r) {
  switch (r.code()) {
    case llm_datadist::LLM_SUCCESS: return ::hixl::SUCCESS;
    case llm_datadist::LLM_PARAM_INVALID: return ::hixl::PARAM_INVALID;
    case llm_datadist::LLM_TIMEOUT: return ::hixl::TIMEOUT;
    case llm_datadist::LLM_NOT_YET_LINK: return ::hixl::NOT_CONNECTED;
    case llm_datadist::LLM_ALREADY_LINK: return ::hixl::ALREADY_CONNECTED;
    case llm_datadist::LLM_OUT_OF_MEMORY:
    case llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT: return ::hixl::RESOURCE_EXHAUSTED;
    case llm_datadist::LLM_FEATURE_NOT_ENABLED: return ::hixl::UNSUPPORTED;
    default: return ::hixl::FAILED;
  }
}

::hixl::Status ReportHixl(const char* api, const Result& r) {
  (void)ReportResult(api, r);  // the log line and the thread's last error
  return ToHixlStatus(r);
}

}  // namespace lldd::hixl_impl
