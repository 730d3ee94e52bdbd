// Log lines on stderr. The level comes from the environment variable
// LLM_DATADIST_LOG_LEVEL (error, warn, info, debug; default error), read once.
// Thread-safe: each line is written with one call.
#ifndef LLM_DATADIST_SRC_COMMON_LOGGING_H_
#define LLM_DATADIST_SRC_COMMON_LOGGING_H_

#include <sstream>

namespace lldd {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

bool LogEnabled(LogLevel level);

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace lldd

// A loop of at most one pass rather than if/else, so that the macro is
// safe inside an unbraced if.
#define LDD_LOG(level)                                                                          \
  for (bool ldd_log_on_ = ::lldd::LogEnabled(::lldd::LogLevel::k##level); ldd_log_on_; ldd_log_on_ = false) \
  ::lldd::LogLine(::lldd::LogLevel::k##level, __FILE__, __LINE__).stream()

#endif  // LLM_DATADIST_SRC_COMMON_LOGGING_H_
