"""Cache descriptions, caches and cache keys with the vendor's names."""
from enum import Enum, IntEnum
from typing import List, Tuple, Union

from llm_datadist import _llm_datadist as _native
from llm_datadist.data_type import DataType, ITEM_SIZE, numpy_dtype, torch_dtype
from llm_datadist.status import raise_if_false

_INVALID_ID = 2**64 - 1
_UINT32_MAX = 2**32 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be int, but got {type(value).__name__}")
    raise_if_false(lo <= value <= hi, f"{name} should be in [{lo}, {hi}], but got {value}")


class RegisterMemStatus(Enum):
    OK = 0
    PREPARING = 1
    FAILED = 2


class Memtype(Enum):
    MEM_TYPE_DEVICE = 0
    MEM_TYPE_HOST = 1


class MemInfo:
    def __init__(self, mem_type: Memtype, addr: int, size: int):
        if not isinstance(mem_type, Memtype):
            raise TypeError("mem_type should be Memtype")
        self._mem_type, self._addr, self._size = mem_type, int(addr), int(size)

    mem_type = property(lambda self: self._mem_type)
    addr = property(lambda self: self._addr)
    size = property(lambda self: self._size)

    def __repr__(self):
        return f"MemInfo(mem_type={self.mem_type}, addr={self.addr}, size={self.size})"


class Placement(IntEnum):
    HOST = 0
    DEVICE = 1  # host memory here until the CUDA path lands

    def __str__(self):
        return f"{self.__class__.__name__}.{self.name}"


class CacheDesc:
    """num_tensors tensors of one shape and data type. Dimension
    batch_dim_index (0) is the batch of a contiguous cache, the block of a
    paged (blocks) cache."""

    def __init__(self, num_tensors: int, shape: Union[Tuple[int], List[int]], data_type: DataType,
                 placement: Placement = Placement.DEVICE, batch_dim_index: int = 0,
                 seq_len_dim_index: int = -1, kv_tensor_format: str = None):
        _check_int("num_tensors", num_tensors, 0, _UINT32_MAX)
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise TypeError("shape should be a list or tuple of int")
        if not isinstance(data_type, DataType):
            raise TypeError("data_type should be DataType")
        if not isinstance(placement, Placement):
            raise TypeError("placement should be Placement")
        raise_if_false(0 <= batch_dim_index < len(shape),
                       f"batch_dim_index {batch_dim_index} out of range, [0, {len(shape)})")
        raise_if_false(seq_len_dim_index == -1 or 0 <= seq_len_dim_index < len(shape),
                       f"seq_len_dim_index {seq_len_dim_index} is invalid")
        raise_if_false(batch_dim_index == 0, "only batch_dim_index 0 is supported")
        for d in shape:
            _check_int("shape dim", d, 0, _INT64_MAX)
        self._num_tensors = num_tensors
        self._shape = list(shape)
        self._data_type = data_type
        self._placement = placement
        self._batch_dim = batch_dim_index
        self._seq_len_dim_index = seq_len_dim_index
        self._kv_tensor_format = kv_tensor_format
        self._is_blocks = False

    def __repr__(self):
        return (f"CacheDesc(num_tensors={self.num_tensors}, shape={self.shape}, data_type={self.data_type}, "
                f"placement={self.placement}, batch_dim_index={self.batch_dim}, "
                f"seq_len_dim_index={self._seq_len_dim_index}, kv_tensor_format={self.kv_tensor_format})")

    num_tensors = property(lambda self: self._num_tensors)
    shape = property(lambda self: self._shape)
    data_type = property(lambda self: self._data_type)
    placement = property(lambda self: self._placement)
    batch_dim = property(lambda self: self._batch_dim)
    seq_len_dim_index = property(lambda self: self._seq_len_dim_index)
    kv_tensor_format = property(lambda self: self._kv_tensor_format)

    @property
    def batch_size(self) -> int:
        return self._shape[self._batch_dim] if self._shape else 1

    def update_dim(self, dim_index: int, dim_value: int) -> None:
        self._shape[dim_index] = dim_value

    @property
    def size(self) -> int:
        """Bytes of one tensor."""
        n = ITEM_SIZE.get(self._data_type)
        raise_if_false(n is not None, f"data type {self._data_type} has no fixed size")
        for d in self._shape:
            n *= d
        return n


class Cache:
    """Made by CacheManager.allocate_cache / register_cache / *_blocks_cache."""

    def __init__(self, cache_id: int, cache_desc: CacheDesc, tensor_addrs: List[int], cache_manager=None,
                 is_registered=False, is_blocks_cache=False, owners=None):
        self._cache_id = cache_id
        self._cache_desc = cache_desc
        self._tensor_addrs = list(tensor_addrs)
        self._valid = True
        self._cache_manager = cache_manager
        self._is_registered = is_registered
        self._is_blocks_cache = is_blocks_cache
        # The Python objects (torch tensors, numpy arrays) whose memory a
        # registered cache uses: held so they outlive the registration.
        self._owners = owners or []

    cache_id = property(lambda self: self._cache_id)
    cache_desc = property(lambda self: self._cache_desc)
    tensor_addrs = property(lambda self: self._tensor_addrs)
    is_blocks_cache = property(lambda self: self._is_blocks_cache)

    @classmethod
    def create_cpu_cache(cls, cache_desc: CacheDesc, addrs: List[int]):
        raise_if_false(cache_desc.placement == Placement.HOST, "cache_desc placement must be HOST")
        raise_if_false(cache_desc.num_tensors == len(addrs), "num_tensors must equal the number of addrs")
        return cls(-1, cache_desc, addrs, None, False, True)

    def _views(self):
        raise_if_false(self._valid, f"cache {self._cache_id} was released")
        nbytes = self._cache_desc.size
        return [_native.memory_view(a, nbytes) for a in self._tensor_addrs]

    def tensors(self):
        """The cache's tensors as torch CPU tensors over its memory (no copy).

        Valid until the cache is deallocated/unregistered or the LLMDataDist
        is finalized; do not use them after that."""
        import torch
        dt = torch_dtype(self._cache_desc.data_type)
        shape = self._cache_desc.shape
        out = []
        for v in self._views():
            t = torch.frombuffer(v, dtype=dt) if len(v) else torch.empty(0, dtype=dt)
            out.append(t.view(*shape))
        return out

    def arrays(self):
        """The cache's tensors as numpy arrays over its memory (no copy;
        bf16 shows as uint16). Same lifetime as tensors()."""
        import numpy as np
        dt = numpy_dtype(self._cache_desc.data_type)
        return [np.frombuffer(v, dtype=dt).reshape(self._cache_desc.shape) for v in self._views()]

    def __str__(self):
        return (f"Cache(cache_id = {self._cache_id}, device_tensor_addrs = {len(self._tensor_addrs)}, "
                f"is_blocks_cache = {self._is_blocks_cache})")

    __repr__ = __str__


class KvCache:
    """The vendor's cache object of its v1 API (KvCacheManager), which it
    still exports. Its v1 manager is a separate closed package that we do not
    provide (LLMDataDist.kv_cache_manager says so), so the only KvCache a
    program gets here is one made by create_cpu_cache: a description of host
    memory per device, checked as the vendor checks it. The v2 calls take a
    Cache (Cache.create_cpu_cache for host memory)."""

    def __init__(self, cache_id: int, cache_desc: CacheDesc, per_device_tensor_addrs: List[List[int]],
                 kv_cache_manager=None):
        _check_int("cache_id", cache_id, -(2**63), 2**63 - 1)
        self._cache_id = cache_id
        self._cache_desc = cache_desc
        self._per_device_tensor_addrs = per_device_tensor_addrs
        self._kv_cache_manager = kv_cache_manager

    cache_id = property(lambda self: self._cache_id)
    cache_desc = property(lambda self: self._cache_desc)
    per_device_tensor_addrs = property(lambda self: self._per_device_tensor_addrs)

    @classmethod
    def create_cpu_cache(cls, cache_desc: CacheDesc, addrs):
        """addrs: one address per tensor, or one such list per device."""
        raise_if_false(isinstance(cache_desc, CacheDesc), "cache_desc should be CacheDesc")
        raise_if_false(cache_desc.placement == Placement.HOST, "cache_desc placement must be HOST")
        raise_if_false(isinstance(addrs, list), "addrs should be list")
        raise_if_false(len(addrs) > 0, "addrs length should be bigger than zero.")
        kinds = {type(a) for a in addrs}
        raise_if_false(len(kinds) == 1 and kinds <= {int, list},
                       "the type of the internal element of addrs should be consistent (int or list).")
        per_device = addrs if list in kinds else [addrs]
        for dev in per_device:
            raise_if_false(all(isinstance(a, int) for a in dev), "addresses should be int")
            raise_if_false(cache_desc.num_tensors == len(dev),
                           f"cache_desc num_tensors:{cache_desc.num_tensors} should be equal to "
                           f"the number of addresses per device:{len(dev)}")
        return cls(-1, cache_desc, per_device, None)

    def __str__(self):
        return f"KvCache(cache_id = {self._cache_id}, num_devices = {len(self._per_device_tensor_addrs)})"

    __repr__ = __str__


class BlocksCacheKey:
    """Names a paged cache by (cluster_id, model_id): registered with it by the
    owner, used by a peer to pull from or push to that cache."""

    def __init__(self, *args, **kwargs):
        raise_if_false(len(args) + len(kwargs) <= 2, "Param num is over limit")
        if len(args) > 0:
            kwargs["cluster_id"] = args[0]
        if len(args) > 1:
            kwargs["model_id"] = args[1]
        raise_if_false("prompt_cluster_id" in kwargs or "cluster_id" in kwargs,
                       "Param prompt_cluster_id or cluster_id is required")
        for k in kwargs:
            raise_if_false(k in ("prompt_cluster_id", "cluster_id", "model_id"), f"Unsupported param:{k}")
        self._cluster_id = kwargs.get("cluster_id", kwargs.get("prompt_cluster_id"))
        self._model_id = kwargs.get("model_id", 0)
        _check_int("cluster_id", self._cluster_id, 0, _INVALID_ID)
        _check_int("model_id", self._model_id, 0, _INVALID_ID)

    prompt_cluster_id = property(lambda self: self._cluster_id)
    cluster_id = property(lambda self: self._cluster_id)
    model_id = property(lambda self: self._model_id)

    def __repr__(self):
        return f"BlocksCacheKey(cluster_id={self.cluster_id}, model_id={self.model_id})"


class CacheKey:
    """Names one batch of a contiguous cache by request (or prefix) id."""

    def __init__(self, *args, **kwargs):
        raise_if_false(len(args) + len(kwargs) <= 4, "Param num is over limit")
        for i, name in enumerate(("cluster_id", "req_id", "model_id", "prefix_id")[:len(args)]):
            kwargs[name] = args[i]
        raise_if_false("prompt_cluster_id" in kwargs or "cluster_id" in kwargs,
                       "Param prompt_cluster_id or cluster_id is required")
        raise_if_false("req_id" in kwargs, "Param req_id is required")
        for k in kwargs:
            raise_if_false(k in ("prompt_cluster_id", "cluster_id", "req_id", "model_id", "prefix_id"),
                           f"Unsupported param:{k}")
        self._cluster_id = kwargs.get("cluster_id", kwargs.get("prompt_cluster_id"))
        self._req_id = kwargs["req_id"]
        self._model_id = kwargs.get("model_id", 0)
        self._prefix_id = kwargs.get("prefix_id", _INVALID_ID)
        for name in ("cluster_id", "req_id", "model_id", "prefix_id"):
            _check_int(name, getattr(self, "_" + name), 0, _INVALID_ID)

    prompt_cluster_id = property(lambda self: self._cluster_id)
    cluster_id = property(lambda self: self._cluster_id)
    req_id = property(lambda self: self._req_id)
    prefix_id = property(lambda self: self._prefix_id)
    model_id = property(lambda self: self._model_id)

    def __repr__(self):
        return (f"CacheKey(cluster_id={self.cluster_id}, req_id={self.req_id}, "
                f"prefix_id={self.prefix_id}, model_id={self.model_id})")


class CacheKeyByIdAndIndex:
    """Names one batch of a peer's cache by the peer's cache id."""

    def __init__(self, cluster_id: int, cache_id: int, batch_index=0):
        _check_int("cluster_id", cluster_id, 0, _INVALID_ID)
        _check_int("cache_id", cache_id, _INT64_MIN, _INT64_MAX)
        _check_int("batch_index", batch_index, 0, _UINT32_MAX)
        self._cluster_id, self._cache_id, self._batch_index = cluster_id, cache_id, batch_index

    cluster_id = property(lambda self: self._cluster_id)
    cache_id = property(lambda self: self._cache_id)
    batch_index = property(lambda self: self._batch_index)

    def __repr__(self):
        return (f"CacheKeyByIdAndIndex(cluster_id={self.cluster_id}, cache_id={self.cache_id}, "
                f"batch_index={self.batch_index})")
