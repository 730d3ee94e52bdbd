#include "common/logging.h"

#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace lldd {
namespace {

LogLevel ReadLevelFromEnvironment() {
  const char* value = std::getenv("LLM_DATADIST_LOG_LEVEL");
  if (value == nullptr) return LogLevel::kError;
  std::string v(value);
  for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "debug" || v == "3") return LogLevel::kDebug;
  if (v == "info" || v == "2") return LogLevel::kInfo;
  if (v == "warn" || v == "warning" || v == "1") return LogLevel::kWarn;
  return LogLevel::kError;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "E";
    case LogLevel::kWarn: return "W";
    case LogLevel::kInfo: return "I";
    case LogLevel::kDebug: return "D";
  }
  return "?";
}

}  // namespace

bool LogEnabled(LogLevel level) {
  static const LogLevel threshold = ReadLevelFromEnvironment();
  return static_cast<int>(level) <= static_cast<int>(threshold);
}

LogLine::LogLine(LogLevel level, const char* file, int line) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm local{};
  localtime_r(&tv.tv_sec, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &local);
  const char* base = std::strrchr(file, '/');
  stream_ << "[llm_datadist " << LevelName(level) << " " << stamp << "." << (tv.tv_usec / 1000) << " pid "
          << getpid() << " " << (base ? base + 1 : file) << ":" << line << "] ";
}

LogLine::~LogLine() {
  stream_ << '\n';
  const std::string text = stream_.str();
  // One write per line so that lines of concurrent threads do not interleave.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace lldd
