"""llm_datadist: the vendor's (Huawei CANN) LLM-DataDist Python API on
llm-datadist, the open-source KV-cache transfer library (TCP, shared memory).

Built for Debian's /usr/bin/python3; see the README's Python section.
"""
from llm_datadist.status import LLMStatusCode, LLMException, Status
from llm_datadist.configs import LLMClusterInfo, LLMRole, LlmConfig, LlmConfig as LLMConfig
from llm_datadist.data_type import DataType
from llm_datadist.llm_types import (CacheDesc, CacheKey, CacheKeyByIdAndIndex, BlocksCacheKey, Placement,
                                    RegisterMemStatus, Cache, KvCache, Memtype, MemInfo)
from llm_datadist.cache_manager import CacheManager
from llm_datadist.transfer_async import CacheTask, LayerSynchronizer, TransferConfig, TransferWithCacheKeyConfig
from llm_datadist.llm_datadist import LLMDataDist

__all__ = [
    "LLMClusterInfo", "LLMStatusCode", "LLMException", "LLMRole", "LlmConfig", "LLMConfig", "DataType", "Status",
    "CacheDesc", "CacheKey", "CacheKeyByIdAndIndex", "Cache", "KvCache", "BlocksCacheKey", "LLMDataDist", "Placement",
    "RegisterMemStatus", "Memtype", "MemInfo", "CacheManager", "CacheTask", "LayerSynchronizer", "TransferConfig",
    "TransferWithCacheKeyConfig",
]
