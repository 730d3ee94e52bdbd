#include "common/result.h"

namespace lldd {

const char* StatusName(Status code) {
  using namespace llm_datadist;
  switch (code) {
    case LLM_SUCCESS: return "LLM_SUCCESS";
    case LLM_FAILED: return "LLM_FAILED";
    case LLM_WAIT_PROC_TIMEOUT: return "LLM_WAIT_PROC_TIMEOUT";
    case LLM_KV_CACHE_NOT_EXIST: return "LLM_KV_CACHE_NOT_EXIST";
    case LLM_PARAM_INVALID: return "LLM_PARAM_INVALID";
    case LLM_NOT_YET_LINK: return "LLM_NOT_YET_LINK";
    case LLM_ALREADY_LINK: return "LLM_ALREADY_LINK";
    case LLM_LINK_FAILED: return "LLM_LINK_FAILED";
    case LLM_UNLINK_FAILED: return "LLM_UNLINK_FAILED";
    case LLM_NOTIFY_PROMPT_UNLINK_FAILED: return "LLM_NOTIFY_PROMPT_UNLINK_FAILED";
    case LLM_CLUSTER_NUM_EXCEED_LIMIT: return "LLM_CLUSTER_NUM_EXCEED_LIMIT";
    case LLM_PROCESSING_LINK: return "LLM_PROCESSING_LINK";
    case LLM_DEVICE_OUT_OF_MEMORY: return "LLM_DEVICE_OUT_OF_MEMORY";
    case LLM_EXIST_LINK: return "LLM_EXIST_LINK";
    case LLM_FEATURE_NOT_ENABLED: return "LLM_FEATURE_NOT_ENABLED";
    case LLM_TIMEOUT: return "LLM_TIMEOUT";
    case LLM_LINK_BUSY: return "LLM_LINK_BUSY";
    case LLM_OUT_OF_MEMORY: return "LLM_OUT_OF_MEMORY";
    default: return "UNKNOWN";
  }
}

}  // namespace lldd
