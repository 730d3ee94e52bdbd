// Status codes of the LLM-DataDist API. The values are part of the ABI:
// users compare and print them in hex, so they never change.
//
// As the original's: the codes 0x5010B001.. are declared in namespace ge
// (its llm_error_codes.h), and llm_datadist names the same constants, so
// ge::LLM_PARAM_INVALID, llm_datadist::LLM_PARAM_INVALID and, with both
// namespaces used, plain LLM_PARAM_INVALID all compile and are one value.
#ifndef LLM_DATADIST_LLM_ERROR_CODES_H_
#define LLM_DATADIST_LLM_ERROR_CODES_H_

#include "llm_datadist/ge_types.h"

namespace ge {

// Every code of the original's llm_error_codes.h, with its value (0x5010B000 + n);
// some are only returned by parts of the original we do not have (prompt
// caching, request queues), and are here so that code naming them compiles.
constexpr Status LLM_WAIT_PROC_TIMEOUT = 0x5010B001U;
constexpr Status LLM_KV_CACHE_NOT_EXIST = 0x5010B002U;
constexpr Status LLM_REPEAT_REQUEST = 0x5010B003U;
constexpr Status LLM_REQUEST_ALREADY_COMPLETED = 0x5010B004U;
constexpr Status LLM_PARAM_INVALID = 0x5010B005U;
constexpr Status LLM_ENGINE_FINALIZED = 0x5010B006U;
constexpr Status LLM_NOT_YET_LINK = 0x5010B007U;
constexpr Status LLM_ALREADY_LINK = 0x5010B008U;
constexpr Status LLM_LINK_FAILED = 0x5010B009U;
constexpr Status LLM_UNLINK_FAILED = 0x5010B00AU;
constexpr Status LLM_NOTIFY_PROMPT_UNLINK_FAILED = 0x5010B00BU;
constexpr Status LLM_CLUSTER_NUM_EXCEED_LIMIT = 0x5010B00CU;
constexpr Status LLM_PROCESSING_LINK = 0x5010B00DU;
constexpr Status LLM_DEVICE_OUT_OF_MEMORY = 0x5010B00EU;
constexpr Status LLM_PREFIX_ALREADY_EXIST = 0x5010B00FU;
constexpr Status LLM_PREFIX_NOT_EXIST = 0x5010B010U;
constexpr Status LLM_SEQ_LEN_OVER_LIMIT = 0x5010B011U;
constexpr Status LLM_NO_FREE_BLOCK = 0x5010B012U;
constexpr Status LLM_BLOCKS_OUT_OF_MEMORY = 0x5010B013U;
constexpr Status LLM_CACHE_INCOMPATIBLE = 0x5010B014U;
constexpr Status LLM_CACHE_KEY_ALREADY_EXIST = 0x5010B015U;
constexpr Status LLM_COPY_CACHE_FAILED = 0x5010B016U;
constexpr Status LLM_CACHE_ID_ALREADY_EXIST = 0x5010B017U;
constexpr Status LLM_EXIST_LINK = 0x5010B018U;
constexpr Status LLM_FEATURE_NOT_ENABLED = 0x5010B019U;
constexpr Status LLM_TIMEOUT = 0x5010B01AU;
constexpr Status LLM_LINK_BUSY = 0x5010B01BU;
constexpr Status LLM_OUT_OF_MEMORY = 0x5010B01CU;

}  // namespace ge

namespace llm_datadist {

using Status = ge::Status;

constexpr Status LLM_SUCCESS = 0x0U;
constexpr Status LLM_FAILED = 0xFFFFFFFFU;
using ge::LLM_WAIT_PROC_TIMEOUT;
using ge::LLM_KV_CACHE_NOT_EXIST;
using ge::LLM_REPEAT_REQUEST;
using ge::LLM_REQUEST_ALREADY_COMPLETED;
using ge::LLM_PARAM_INVALID;
using ge::LLM_ENGINE_FINALIZED;
using ge::LLM_NOT_YET_LINK;
using ge::LLM_ALREADY_LINK;
using ge::LLM_LINK_FAILED;
using ge::LLM_UNLINK_FAILED;
using ge::LLM_NOTIFY_PROMPT_UNLINK_FAILED;
using ge::LLM_CLUSTER_NUM_EXCEED_LIMIT;
using ge::LLM_PROCESSING_LINK;
using ge::LLM_DEVICE_OUT_OF_MEMORY;
using ge::LLM_PREFIX_ALREADY_EXIST;
using ge::LLM_PREFIX_NOT_EXIST;
using ge::LLM_SEQ_LEN_OVER_LIMIT;
using ge::LLM_NO_FREE_BLOCK;
using ge::LLM_BLOCKS_OUT_OF_MEMORY;
using ge::LLM_CACHE_INCOMPATIBLE;
using ge::LLM_CACHE_KEY_ALREADY_EXIST;
using ge::LLM_COPY_CACHE_FAILED;
using ge::LLM_CACHE_ID_ALREADY_EXIST;
using ge::LLM_EXIST_LINK;
using ge::LLM_FEATURE_NOT_ENABLED;
using ge::LLM_TIMEOUT;
using ge::LLM_LINK_BUSY;
using ge::LLM_OUT_OF_MEMORY;

}  // namespace llm_datadist

#endif  // LLM_DATADIST_LLM_ERROR_CODES_H_
