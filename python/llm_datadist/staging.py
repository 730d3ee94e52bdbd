"""Host staging for the vendor's calls that move bytes between caches of
different shapes or between a cache and unregistered memory (a contiguous
row into blocks; swap_blocks with a Cache.create_cpu_cache cache). The C++
API moves data only between registered caches, so the memory is registered
for the one call, with the shape the call needs, and unregistered after."""
import ctypes
from contextlib import contextmanager

from llm_datadist.data_type import DataType
from llm_datadist.llm_types import Placement
from llm_datadist.status import LLMStatusCode, handle_llm_status, raise_if_false


@contextmanager
def registered(engine, placement, num_tensors, shape, addrs, what, dtype=DataType.DT_UINT8):
    """A cache id over `addrs` for the duration of the with-block."""
    # A library id: staging never takes a user cache id (those go 1, 2, ...
    # as the vendor's, whatever the module does in between).
    st, cache_id = engine.register_library(int(placement), num_tensors, dtype.value, list(shape), list(addrs))
    handle_llm_status(st, what, "registering staging memory")
    try:
        yield cache_id
    finally:
        engine.unregister(cache_id)


class RowToBlocks:
    """One pull of a peer's contiguous row into local blocks."""

    def __init__(self, engine, dst_cache, dst_blocks, ext):
        desc = dst_cache.cache_desc
        raise_if_false(dst_cache.is_blocks_cache, "param check failed, dst_cache should be blocks cache.")
        raise_if_false(ext[:4] == (-1, -1, -1, -1),
                       "pull_blocks from a contiguous cache moves every layer: no layer ranges",
                       status_code=LLMStatusCode.LLM_FEATURE_NOT_ENABLED)
        self._engine = engine
        self._dst = dst_cache
        self._dst_blocks = list(dst_blocks)
        self._num_tensors = desc.num_tensors
        self._block_bytes = desc.size // desc.batch_size
        self._row_bytes = self._block_bytes * len(self._dst_blocks)
        self._ext = ext

    def run(self, cluster, cache_id, batch):
        n = len(self._dst_blocks)
        bufs = [ctypes.create_string_buffer(self._row_bytes) for _ in range(self._num_tensors)]
        addrs = [ctypes.addressof(b) for b in bufs]
        with registered(self._engine, Placement.HOST, self._num_tensors, [1, self._row_bytes], addrs,
                        "[pull_blocks]") as row_id:
            # The C++ pull checks that the peer's row is exactly this long.
            st = self._engine.pull_cache(cluster, cache_id, batch, row_id, 0, -1, self._ext)
        if st != LLMStatusCode.LLM_SUCCESS:
            return st
        with registered(self._engine, Placement.HOST, self._num_tensors, [n, self._block_bytes], addrs,
                        "[pull_blocks]") as blocks_id:
            return self._engine.copy_blocks(blocks_id, self._dst.cache_id, list(range(n)), [self._dst_blocks])


def swap_blocks(engine, src_cache, dst_cache, src_to_dst):
    """Copies block s of src_cache into block src_to_dst[s] of dst_cache, for
    every tensor; a cache made by Cache.create_cpu_cache (id -1) is
    registered for the call."""
    src, dst = list(src_to_dst.keys()), list(src_to_dst.values())
    block_bytes = src_cache.cache_desc.size // src_cache.cache_desc.batch_size

    def ensure(cache, what):
        if cache.cache_id >= 0:
            return _Known(cache.cache_id)
        desc = cache.cache_desc
        return registered(engine, Placement.HOST, desc.num_tensors, [desc.batch_size, block_bytes],
                          cache.tensor_addrs, what)

    with ensure(src_cache, "[swap_blocks]") as src_id, ensure(dst_cache, "[swap_blocks]") as dst_id:
        return engine.copy_blocks(src_id, dst_id, src, [dst])


class _Known:
    def __init__(self, cache_id):
        self._id = cache_id

    def __enter__(self):
        return self._id

    def __exit__(self, *exc):
        return False
