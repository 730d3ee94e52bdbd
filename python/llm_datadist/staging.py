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
    """One pull of a peer's contiguous row into local blocks, every layer or
    those of the layer ranges: the row of the selected layers lands in a
    staging row (one tensor per destination tensor), which is then copied,
    as blocks, into a view of just the destination layers' tensors, so the
    other layers of dst_cache stay untouched."""

    def __init__(self, engine, dst_cache, dst_blocks, ext):
        desc = dst_cache.cache_desc
        raise_if_false(dst_cache.is_blocks_cache, "param check failed, dst_cache should be blocks cache.")
        src_first, src_last, dst_first, dst_last, per_layer = ext
        raise_if_false(desc.num_tensors % per_layer == 0, f"tensor_num_per_layer ({per_layer}) does not divide "
                       f"dst_cache's {desc.num_tensors} tensors")
        if dst_first < 0:
            dst_first, dst_last = 0, desc.num_tensors // per_layer - 1
        raise_if_false((dst_last + 1) * per_layer <= desc.num_tensors,
                       f"dst_layer_range ends at layer {dst_last}, dst_cache has {desc.num_tensors // per_layer}")
        self._engine = engine
        self._dst = dst_cache
        self._dst_blocks = list(dst_blocks)
        self._tensors = range(dst_first * per_layer, (dst_last + 1) * per_layer)
        self._block_bytes = desc.size // desc.batch_size
        self._row_bytes = self._block_bytes * len(self._dst_blocks)
        # The staging row holds only the selected layers, from its layer 0
        # (src_first -1: every layer of the peer's cache, as many as those).
        self._ext = (src_first, src_last, 0, dst_last - dst_first, per_layer)

    def run(self, cluster, cache_id, batch):
        n, desc = len(self._dst_blocks), self._dst.cache_desc
        bufs = [ctypes.create_string_buffer(self._row_bytes) for _ in self._tensors]
        addrs = [ctypes.addressof(b) for b in bufs]
        with registered(self._engine, Placement.HOST, len(addrs), [1, self._row_bytes], addrs,
                        "[pull_blocks]") as row_id:
            # The C++ pull checks that the peer's row is exactly this long.
            st = self._engine.pull_cache(cluster, cache_id, batch, row_id, 0, -1, self._ext)
        if st != LLMStatusCode.LLM_SUCCESS:
            return st
        dst_addrs = [self._dst.tensor_addrs[t] for t in self._tensors]
        with registered(self._engine, Placement.HOST, len(addrs), [n, self._block_bytes], addrs,
                        "[pull_blocks]") as blocks_id, \
                registered(self._engine, desc.placement, len(dst_addrs), [desc.batch_size, self._block_bytes],
                           dst_addrs, "[pull_blocks]") as dst_id:
            return self._engine.copy_blocks(blocks_id, dst_id, list(range(n)), [self._dst_blocks])


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
