"""Layer-wise asynchronous transfer (the vendor's transfer_cache_async).

The prefill model computes layer after layer; the KV cache of layer i can
travel while layer i+1 is computed. A thread of the task, for each layer in
order, asks the application's LayerSynchronizer whether the layer is ready
(synchronize_layer blocks until it is, or returns False), then pushes that
layer to every destination whose source layer range holds it. The push
releases the GIL, so the model's Python thread runs meanwhile.

As the vendor's: results are per transfer config, in order; a config whose
last layer arrived is LLM_SUCCESS, one stopped by a synchronizer that
returned False is LLM_PARAM_INVALID (the vendor's status for it), one stopped
by a failed push gets that push's status, and one never reached stays None;
get_results(timeout) answers LLM_TIMEOUT for every config while the task is
still running. A stopped task sends no later layer, so nothing of it is left
running. Destinations: TransferWithCacheKeyConfig (a peer's cache by key or
id) and TransferConfig (raw addresses in the peer's process, which the peer
resolves against the caches it allocated or registered: an address outside
them is LLM_PARAM_INVALID for that config, nothing written). Sources and
destinations: cache to cache, blocks to blocks, and cache to blocks
(dst_block_indices with dst_block_memory_size; see transfer_ranges.py).
"""
import logging
import threading
from abc import ABC, abstractmethod
from typing import List, Optional

from llm_datadist import transfer_ranges
from llm_datadist.llm_types import BlocksCacheKey, CacheKeyByIdAndIndex, Placement
from llm_datadist.status import LLMException, LLMStatusCode, raise_if_false, raise_if_true

_log = logging.getLogger("llm_datadist")
_NUM_TENSORS_PER_LAYER = 2


class LayerSynchronizer(ABC):
    @abstractmethod
    def synchronize_layer(self, layer_index: int, timeout_in_millis: Optional[int]) -> bool:
        """Blocks until layer `layer_index` is computed; False if it never
        will be (the transfer stops)."""


def _check_uint(name, v, bits):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} should be int")
    raise_if_false(0 <= v < 2**bits, f"{name} ({v}) is out of range")


def _check_layer_range(name, r, allow_none=True):
    if r is None and allow_none:
        return
    if not isinstance(r, range):
        raise TypeError(f"{name} should be range")
    raise_if_false(r.step == 1, f"check {name}.step == 1 failed")
    raise_if_false(0 <= r.start < r.stop, f"check 0 <= range.start < range.stop failed, {name} = {r}")


class TransferWithCacheKeyConfig:
    """One destination: a peer's cache by key, and which layers go where."""

    def __init__(self, cache_key, src_layer_range: range = None, dst_layer_range: range = None,
                 src_batch_index: int = 0):
        if not isinstance(cache_key, (BlocksCacheKey, CacheKeyByIdAndIndex)):
            raise TypeError("cache_key should be BlocksCacheKey or CacheKeyByIdAndIndex")
        _check_layer_range("src_layer_range", src_layer_range, allow_none=False)
        _check_layer_range("dst_layer_range", dst_layer_range, allow_none=False)
        raise_if_false(len(src_layer_range) == len(dst_layer_range),
                       "src_layer_range size should be equal to dst_layer_range size")
        _check_uint("src_batch_index", src_batch_index, 32)
        raise_if_true(isinstance(cache_key, BlocksCacheKey) and src_batch_index != 0,
                      "src_batch_index should be 0 when cache_key is BlocksCacheKey.")
        self._cache_key = cache_key
        self._src_layer_range = src_layer_range
        self._dst_layer_range = dst_layer_range
        self._src_batch_index = src_batch_index
        self.dst_cluster_id = cache_key.cluster_id

    cache_key = property(lambda self: self._cache_key)
    src_layer_range = property(lambda self: self._src_layer_range)
    dst_layer_range = property(lambda self: self._dst_layer_range)
    src_batch_index = property(lambda self: self._src_batch_index)

    def __repr__(self):
        return (f"TransferWithCacheKeyConfig(cache_key={self._cache_key}, src_layer_range={self._src_layer_range},"
                f" dst_layer_range={self._dst_layer_range}, src_batch_index={self._src_batch_index})")


class TransferConfig:
    """A destination by raw addresses of the peer's process: two per layer
    of src_layer_range (None: every layer), K then V, each the start of that
    tensor's destination row (or of its block 0 when sending to blocks).
    They must lie inside caches the peer allocated or registered."""

    def __init__(self, dst_cluster_id: int, dst_addrs: List[int], src_layer_range: Optional[range] = None,
                 src_batch_index: int = 0):
        self.dst_cluster_id = dst_cluster_id
        self.dst_addrs = dst_addrs
        self.src_layer_range = src_layer_range
        self.src_batch_index = src_batch_index
        self.dst_layer_range = None

    # Properties whose setters check, as the vendor's do: a config changed
    # after construction is held to the same rules as a new one.
    @property
    def dst_cluster_id(self) -> int:
        return self._dst_cluster_id

    @dst_cluster_id.setter
    def dst_cluster_id(self, value: int) -> None:
        _check_uint("dst_cluster_id", value, 64)
        self._dst_cluster_id = value

    @property
    def dst_addrs(self) -> List[int]:
        return self._dst_addrs

    @dst_addrs.setter
    def dst_addrs(self, value: List[int]) -> None:
        if not isinstance(value, (list, tuple)):
            raise TypeError("dst_addrs should be list or tuple")
        for a in value:
            _check_uint("dst_addrs", a, 64)
        self._dst_addrs = list(value)

    @property
    def src_layer_range(self) -> Optional[range]:
        return self._src_layer_range

    @src_layer_range.setter
    def src_layer_range(self, value: Optional[range]) -> None:
        _check_layer_range("src_layer_range", value)
        self._src_layer_range = value

    @property
    def src_batch_index(self) -> int:
        return self._src_batch_index

    @src_batch_index.setter
    def src_batch_index(self, value: int) -> None:
        _check_uint("src_batch_index", value, 32)
        self._src_batch_index = value

    def __repr__(self):
        return (f"TransferConfig(dst_cluster_id={self.dst_cluster_id}, dst_addrs={self.dst_addrs},"
                f" src_layer_range={self.src_layer_range}, src_batch_index={self.src_batch_index})")


class CacheTask:
    """What transfer_cache_async returns."""

    def __init__(self, job):
        self._job = job

    @staticmethod
    def _seconds(timeout_in_millis):
        if timeout_in_millis is None:
            return None
        _check_uint("timeout_in_millis", timeout_in_millis, 32)
        return timeout_in_millis / 1000

    def synchronize(self, timeout_in_millis: Optional[int] = None) -> LLMStatusCode:
        """Waits; the first failing status, else LLM_SUCCESS (LLM_TIMEOUT if
        the task is still running when the timeout passes)."""
        rets = self.get_results(timeout_in_millis)
        for r in rets:
            if r is not None and r != LLMStatusCode.LLM_SUCCESS:
                return r
        return LLMStatusCode.LLM_SUCCESS

    def get_results(self, timeout_in_millis: Optional[int] = None) -> List[LLMStatusCode]:
        """Waits; one status per transfer config, in order."""
        if not self._job.done.wait(self._seconds(timeout_in_millis)):
            return [LLMStatusCode.LLM_TIMEOUT] * len(self._job.configs)
        return list(self._job.results)


class _Job:
    def __init__(self, manager, src_cache, synchronizer, configs, src_blocks, dst_blocks, block_bytes):
        self.manager = manager
        self.src = src_cache
        self.sync = synchronizer
        self.configs = configs
        self.src_blocks = src_blocks
        self.dst_blocks = dst_blocks
        self.block_bytes = block_bytes
        self.num_layers = src_cache.cache_desc.num_tensors // _NUM_TENSORS_PER_LAYER
        self.src_ranges = [c.src_layer_range or range(0, self.num_layers) for c in configs]
        self.plans = [None] * len(configs)  # byte-range plans, made at a config's first layer
        self.results = [None] * len(configs)
        self.done = threading.Event()

    def _send(self, i, src_layer, dst_layer):
        config, cm = self.configs[i], self.manager
        engine = cm._engine
        if isinstance(config, TransferConfig):
            if self.plans[i] is None:
                self.plans[i] = transfer_ranges.AddressPlan(self.src.cache_desc, config, self.src_ranges[i], self.src_blocks,
                                                            self.dst_blocks, self.block_bytes)
            transfer_ranges.push(engine, self.src, config.dst_cluster_id, self.plans[i].ranges(src_layer),
                                 "[transfer_cache_async]")
            return
        key = config.cache_key
        if self.dst_blocks and not self.src_blocks:
            if self.plans[i] is None:
                cluster, cache_id, _, _, _ = cm._remote(key, True)
                self.plans[i] = transfer_ranges.CacheToBlocksPlan(engine, self.src.cache_desc, cluster, cache_id,
                                                                  config, self.dst_blocks, self.block_bytes)
            transfer_ranges.push(engine, self.src, key.cluster_id, self.plans[i].ranges(src_layer, dst_layer),
                                 "[transfer_cache_async]")
            return
        src_r, dst_r = range(src_layer, src_layer + 1), range(dst_layer, dst_layer + 1)
        if self.src_blocks:
            cm.push_blocks(key, self.src, self.src_blocks, self.dst_blocks, src_r, dst_r)
        elif isinstance(key, BlocksCacheKey):
            # A blocks cache sent whole: every block into the same block.
            blocks = list(range(self.src.cache_desc.batch_size))
            cm.push_blocks(key, self.src, blocks, blocks, src_r, dst_r)
        else:
            cm.push_cache(key, self.src, config.src_batch_index, src_r, dst_r)

    def run(self):
        try:
            self._layers()
        except BaseException as e:  # noqa: B902 - the task must end whatever happens
            _log.error("[transfer_cache_async] stopped: %s", e)
            for i, r in enumerate(self.results):
                if r is None:
                    self.results[i] = LLMStatusCode.LLM_FAILED
        finally:
            self.done.set()

    def _layers(self):
        live = set(range(len(self.configs)))
        for layer in range(self.num_layers):
            wanted = [i for i in live if layer in self.src_ranges[i]]
            if not wanted:
                continue
            if not self.sync.synchronize_layer(layer, None):
                _log.error("[transfer_cache_async] layer %d was not released: transfer stopped", layer)
                for i in live:
                    self.results[i] = LLMStatusCode.LLM_PARAM_INVALID
                return
            for i in wanted:
                c, src_range = self.configs[i], self.src_ranges[i]
                dst_layer = layer - src_range.start if c.dst_layer_range is None else \
                    c.dst_layer_range[layer - src_range.start]
                try:
                    self._send(i, layer, dst_layer)
                except LLMException as e:
                    _log.error("[transfer_cache_async] layer %d to cluster %d failed: %s", layer,
                               c.dst_cluster_id, e)
                    self.results[i] = e.status_code
                    live.discard(i)
                    continue
                if layer == src_range.stop - 1:
                    self.results[i] = LLMStatusCode.LLM_SUCCESS
                    live.discard(i)


def _block_list(name, v):
    if v is None:
        return []
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"{name} should be list or tuple")
    for b in v:
        _check_uint(name, b, 64)
    return list(v)


def start(manager, src_cache, synchronizer, configs, src_block_indices, dst_block_indices, dst_block_memory_size):
    raise_if_true(src_cache.cache_desc.placement == Placement.HOST, "src cache not support placement HOST")
    if not isinstance(synchronizer, LayerSynchronizer):
        raise TypeError("layer_synchronizer should be LayerSynchronizer")
    if not isinstance(configs, (list, tuple)) or not configs:
        raise TypeError("transfer_configs should be a non-empty list or tuple")
    src_blocks = _block_list("src_block_indices", src_block_indices)
    dst_blocks = _block_list("dst_block_indices", dst_block_indices)
    if dst_block_memory_size is not None:
        _check_uint("dst_block_memory_size", dst_block_memory_size, 64)
    if src_blocks:
        raise_if_false(dst_blocks, "transfer from blocks to cache is not supported")
        raise_if_false(len(src_blocks) == len(dst_blocks),
                       f"num_block_indices mismatches, src_num = {len(src_blocks)}, dst_num = {len(dst_blocks)}")
    elif dst_blocks:
        raise_if_false(dst_block_memory_size is not None,
                       "dst_block_memory_size must be set when transfer from cache to blocks")
    raise_if_false(dst_blocks or dst_block_memory_size in (None, 0),
                   f"dst_block_memory_size ({dst_block_memory_size}) is neither None nor 0 while dst is not blocks")
    desc = src_cache.cache_desc
    raise_if_false(desc.num_tensors % _NUM_TENSORS_PER_LAYER == 0, f"cache_desc.num_tensors ({desc.num_tensors}) "
                   "is not even")
    num_layers = desc.num_tensors // _NUM_TENSORS_PER_LAYER
    for c in configs:
        if not isinstance(c, (TransferConfig, TransferWithCacheKeyConfig)):
            raise TypeError("transfer_configs should hold TransferConfig or TransferWithCacheKeyConfig")
        r = c.src_layer_range or range(0, num_layers)
        raise_if_false(0 <= r.start < r.stop <= num_layers,
                       f"src_layer_range: {r} out of range, src_layer_num = {num_layers}")
        if isinstance(c, TransferConfig):
            raise_if_false(len(c.dst_addrs) == len(r) * _NUM_TENSORS_PER_LAYER,
                           f"expect {len(r) * _NUM_TENSORS_PER_LAYER} dst_addrs, but len(dst_addrs) = "
                           f"{len(c.dst_addrs)}, range = {r}")
        if not src_blocks and c.src_batch_index >= desc.batch_size:
            raise LLMException(f"Invalid TransferConfig, src_batch_index ({c.src_batch_index}) out of range: "
                               f"[0, {desc.batch_size})", status_code=LLMStatusCode.LLM_PARAM_INVALID)
        if src_blocks:
            raise_if_false(c.src_batch_index == 0,
                           f"Invalid TransferConfig, src_batch_index ({c.src_batch_index}) != 0 while src is blocks")
    job = _Job(manager, src_cache, synchronizer, list(configs), src_blocks, dst_blocks, dst_block_memory_size or 0)
    threading.Thread(target=job.run, name="llm_datadist-transfer-async", daemon=True).start()
    return CacheTask(job)
