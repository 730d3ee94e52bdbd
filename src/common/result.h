// Result: an API status code plus the human-readable reason.
//
// Internal functions return Result instead of a bare code so that the
// reason travels with the failure up to the API boundary, where it becomes
// the caller's last-error message and a log line.
#ifndef LLM_DATADIST_SRC_COMMON_RESULT_H_
#define LLM_DATADIST_SRC_COMMON_RESULT_H_

#include <sstream>
#include <string>
#include <utility>

#include "llm_datadist/llm_error_codes.h"

namespace lldd {

using llm_datadist::Status;

class Result {
 public:
  Result() = default;
  Result(Status code, std::string message) : code_(code), message_(std::move(message)) {}

  static Result Ok() { return Result(); }
  static Result Failed(std::string m) { return {llm_datadist::LLM_FAILED, std::move(m)}; }
  static Result ParamInvalid(std::string m) { return {llm_datadist::LLM_PARAM_INVALID, std::move(m)}; }
  static Result CacheNotExist(std::string m) { return {llm_datadist::LLM_KV_CACHE_NOT_EXIST, std::move(m)}; }
  static Result NotYetLink(std::string m) { return {llm_datadist::LLM_NOT_YET_LINK, std::move(m)}; }
  static Result AlreadyLink(std::string m) { return {llm_datadist::LLM_ALREADY_LINK, std::move(m)}; }
  static Result LinkFailed(std::string m) { return {llm_datadist::LLM_LINK_FAILED, std::move(m)}; }
  static Result UnlinkFailed(std::string m) { return {llm_datadist::LLM_UNLINK_FAILED, std::move(m)}; }
  static Result Timeout(std::string m) { return {llm_datadist::LLM_TIMEOUT, std::move(m)}; }
  static Result OutOfMemory(std::string m) { return {llm_datadist::LLM_OUT_OF_MEMORY, std::move(m)}; }
  static Result FeatureNotEnabled(std::string m) { return {llm_datadist::LLM_FEATURE_NOT_ENABLED, std::move(m)}; }

  bool ok() const { return code_ == llm_datadist::LLM_SUCCESS; }
  Status code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes context ("pull from cluster 7: ") to the reason, keeping the code.
  Result WithContext(const std::string& context) const {
    return ok() ? *this : Result(code_, context + ": " + message_);
  }

 private:
  Status code_ = llm_datadist::LLM_SUCCESS;
  std::string message_;
};

// Name of a status code, e.g. "LLM_TIMEOUT"; "UNKNOWN" for others.
const char* StatusName(Status code);

// Builds a message from stream-able pieces: Msg("block ", i, " out of range").
template <typename... Args>
std::string Msg(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace lldd

#define LDD_RETURN_IF_ERROR(expr)            \
  do {                                       \
    ::lldd::Result ldd_result_ = (expr);     \
    if (!ldd_result_.ok()) return ldd_result_; \
  } while (0)

#endif  // LLM_DATADIST_SRC_COMMON_RESULT_H_
