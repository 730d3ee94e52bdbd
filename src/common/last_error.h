// The per-thread "last error" the API exposes through
// LlmDataDist::GetLastErrorMessage().
#ifndef LLM_DATADIST_SRC_COMMON_LAST_ERROR_H_
#define LLM_DATADIST_SRC_COMMON_LAST_ERROR_H_

#include <string>

#include "common/result.h"

namespace lldd {

// Records a failed result for this thread (and logs it); returns its code.
// A success clears the message.
Status ReportResult(const char* api_name, const Result& result);
const std::string& LastErrorMessage();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_LAST_ERROR_H_
