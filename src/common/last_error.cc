#include "common/last_error.h"

#include <cstdio>

#include "common/logging.h"

namespace lldd {
namespace {
thread_local std::string t_last_error;
}

Status ReportResult(const char* api_name, const Result& result) {
  if (result.ok()) {
    t_last_error.clear();
    return result.code();
  }
  char code[16];
  std::snprintf(code, sizeof(code), "0x%08X", result.code());
  t_last_error = Msg(api_name, " failed with ", StatusName(result.code()), " (", code, "): ", result.message());
  LDD_LOG(Error) << t_last_error;
  return result.code();
}

const std::string& LastErrorMessage() { return t_last_error; }

}  // namespace lldd
