"""Torch CUDA tensors and __cuda_array_interface__ objects register as GPU
memory (placement DEVICE); skipped where torch has no CUDA."""
import pytest
import torch

from llm_datadist import CacheDesc, DataType, LLMConfig, LLMDataDist, LLMException, LLMRole, Placement

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA here")


class _CudaArray:
    """The least a CUDA array library exposes (CuPy, Numba)."""

    def __init__(self, t):
        self._t = t
        self.__cuda_array_interface__ = {"shape": tuple(t.shape), "typestr": "<f4", "data": (t.data_ptr(), False),
                                         "version": 3, "strides": None}


def test_cuda_tensors_register_as_device_memory():
    dd = LLMDataDist(LLMRole.DECODER, 7)
    cfg = LLMConfig()
    cfg.device_id = 0
    dd.init(cfg.generate_options())
    try:
        cm = dd.cache_manager
        k = torch.arange(32, dtype=torch.float, device="cuda").reshape(4, 8)
        v = torch.arange(32, 64, dtype=torch.float, device="cuda").reshape(4, 8)
        desc = CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.DEVICE)
        cache = cm.register_blocks_cache(desc, [k, _CudaArray(v)])
        cm.copy_blocks(cache, {0: [1]})  # a GPU-to-GPU copy by the library
        torch.cuda.synchronize()
        assert torch.equal(k[1], k[0]) and torch.equal(v[1], v[0])
        with pytest.raises(LLMException):
            cm.register_cache(CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST), [k, v])
        cm.unregister_cache(cache.cache_id)
    finally:
        dd.finalize()
