"""Status codes and the exception of the vendor's llm_datadist package.

The values are the C++ ABI values (include/llm_datadist/llm_error_codes.h);
LLMException carries the status and the library's last-error message.
"""
from enum import IntEnum

from llm_datadist import _llm_datadist as _native

_C = _native.status_codes


class LLMStatusCode(IntEnum):
    LLM_SUCCESS = _C["LLM_SUCCESS"]
    LLM_FAILED = _C["LLM_FAILED"]
    LLM_PARAM_INVALID = _C["LLM_PARAM_INVALID"]
    LLM_WAIT_PROCESS_TIMEOUT = _C["LLM_WAIT_PROC_TIMEOUT"]
    LLM_KV_CACHE_NOT_EXIST = _C["LLM_KV_CACHE_NOT_EXIST"]
    LLM_REPEAT_REQUEST = _C["LLM_REPEAT_REQUEST"]
    LLM_REQUEST_ALREADY_COMPLETED = _C["LLM_REQUEST_ALREADY_COMPLETED"]
    LLM_ENGINE_FINALIZED = _C["LLM_ENGINE_FINALIZED"]
    LLM_NOT_YET_LINK = _C["LLM_NOT_YET_LINK"]
    LLM_ALREADY_LINK = _C["LLM_ALREADY_LINK"]
    LLM_LINK_FAILED = _C["LLM_LINK_FAILED"]
    LLM_UNLINK_FAILED = _C["LLM_UNLINK_FAILED"]
    LLM_NOTIFY_PROMPT_UNLINK_FAILED = _C["LLM_NOTIFY_PROMPT_UNLINK_FAILED"]
    LLM_CLUSTER_NUM_EXCEED_LIMIT = _C["LLM_CLUSTER_NUM_EXCEED_LIMIT"]
    LLM_PROCESSING_LINK = _C["LLM_PROCESSING_LINK"]
    LLM_DEVICE_OUT_OF_MEMORY = _C["LLM_DEVICE_OUT_OF_MEMORY"]
    LLM_PREFIX_ALREADY_EXIST = _C["LLM_PREFIX_ALREADY_EXIST"]
    LLM_PREFIX_NOT_EXIST = _C["LLM_PREFIX_NOT_EXIST"]
    LLM_SEQ_LENOVERLIMIT = _C["LLM_SEQ_LEN_OVER_LIMIT"]
    LLM_NO_FREE_BLOCK = _C["LLM_NO_FREE_BLOCK"]
    LLM_BLOCKS_OUT_OF_MEMORY = _C["LLM_BLOCKS_OUT_OF_MEMORY"]
    LLM_EXIST_LINK = _C["LLM_EXIST_LINK"]
    LLM_FEATURE_NOT_ENABLED = _C["LLM_FEATURE_NOT_ENABLED"]
    LLM_TIMEOUT = _C["LLM_TIMEOUT"]
    LLM_LINK_BUSY = _C["LLM_LINK_BUSY"]
    LLM_OUT_OF_MEMORY = _C["LLM_OUT_OF_MEMORY"]
    # The vendor's are the Ascend runtime's ACL_ERROR_RT_DEVICE_MEM_ERROR and
    # ACL_ERROR_RT_SUSPECT_REMOTE_ERROR; never returned here.
    LLM_DEVICE_MEM_ERROR = 507053
    LLM_SUSPECT_REMOTE_ERROR = 507057
    LLM_UNKNOWN_ERROR = -1

    def __str__(self):
        return f"{self.__class__.__name__}.{self.name}"


class LLMException(RuntimeError):
    """Raised by every failing call; `status_code` is an LLMStatusCode."""

    def __init__(self, *args, status_code=LLMStatusCode.LLM_SUCCESS):
        super().__init__(*args)
        self._status_code = status_code

    @property
    def status_code(self):
        return self._status_code


class Status:
    def __init__(self, status):
        self._status_code = status

    def is_ok(self):
        return self._status_code == LLMStatusCode.LLM_SUCCESS

    @property
    def status_code(self):
        return self._status_code


def code_2_status(status) -> LLMStatusCode:
    try:
        return LLMStatusCode(status)
    except ValueError:
        return LLMStatusCode.LLM_FAILED


def handle_llm_status(status, func_name, other_info=""):
    """Raises LLMException for a failed C++ status, with the C++ reason.

    Must run on the thread that made the failing call (the reason is per thread).
    """
    if status != 0:
        code = code_2_status(status)
        reason = _native.last_error_message()
        msg = f"{func_name} failed, error code is {code}"
        if reason:
            msg += f": {reason}"
        if other_info:
            msg += f" ({other_info})"
        raise LLMException(msg, status_code=code)


def raise_if_false(pred, fmt, *args, status_code=LLMStatusCode.LLM_PARAM_INVALID, **kwargs):
    if not pred:
        raise LLMException(fmt.format(*args, **kwargs) if (args or kwargs) else fmt, status_code=status_code)


def raise_if_true(pred, fmt, *args, status_code=LLMStatusCode.LLM_PARAM_INVALID, **kwargs):
    raise_if_false(not pred, fmt, *args, status_code=status_code, **kwargs)
