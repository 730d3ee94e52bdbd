"""CacheManager: the vendor's cache operations over the C++ LlmDataDist.

Cache keys. The C++ API names a peer's cache by its id only; the vendor's
Python API also names it by key (BlocksCacheKey(cluster_id, model_id),
CacheKey(cluster_id, req_id, ...)). Each instance therefore publishes a small
*key directory*: a library-allocated cache holding its key -> (cache id,
batch) table. A peer resolves a key by pulling that table over the link with
the ordinary PullKvCache (into its own scratch cache), so keys registered
after a link are visible too. These caches come from AllocateLibraryCache
(ids from LlmDataDist::kLibraryCacheIdBase, in a fixed order, so a peer knows
them): user cache ids start at 1 as the vendor's, and a peer naming a user
cache id never reaches them. A torn read (the owner updating
the table during the pull) fails the table's CRC and is read again.

Releases. As the vendor's, a cache allocated with CacheKeys is held by its id
and by each key: deallocate_cache drops the id, and the memory goes only once
every key is gone too (a registered cache is the caller's memory:
unregister_cache ends it at once, keys and all). A key goes by
remove_cache_key on the owner, or by a successful pull_cache by that key: the
puller then pushes a release note (the key's generation) into the owner's
*release inbox* (the third library cache, one row per directory slot; the
fourth is the puller's one-row staging cache). The owner acts on notes at its next cache_manager
call, so a key may still resolve, and its memory stay, until then.
"""
import logging
import struct
import threading
import time
import zlib
from typing import Dict, List, Optional, Tuple, Union

from llm_datadist import staging, transfer_async
from llm_datadist.data_type import DataType
from llm_datadist.llm_types import (BlocksCacheKey, Cache, CacheDesc, CacheKey, CacheKeyByIdAndIndex, MemInfo,
                                    Memtype, Placement)
from llm_datadist.status import LLMException, LLMStatusCode, handle_llm_status, raise_if_false

_log = logging.getLogger("llm_datadist")

_NUM_TENSORS_PER_LAYER = 2
_INVALID_ID = 2**64 - 1

from llm_datadist import _llm_datadist as _native_ids
DIRECTORY_CACHE_ID = _native_ids.library_cache_id_base
INBOX_CACHE_ID = _native_ids.library_cache_id_base + 2
_DIR_MAGIC = 0x324B4559534C4444  # "DDLSYEK2"
_DIR_BYTES = 256 * 1024
_DIR_HEAD = struct.Struct("<QQII")           # magic, seq, count, crc
_DIR_ENTRY = struct.Struct("<IIQQQqI4xQ")    # kind, slot, model_id, req_id, prefix_id, cache_id, batch, generation
_DIR_MAX = (_DIR_BYTES - _DIR_HEAD.size) // _DIR_ENTRY.size
_NOTE_MAGIC = 0x45534145454C4552  # "RELEASE"
_NOTE = struct.Struct("<QQ16x")              # magic, generation of the released key
_FIRST_READ = 4096
_KIND_BLOCKS, _KIND_CACHE = 1, 2


def _addr_of(obj):
    """The data address of an int, a torch tensor or a numpy array (+ the
    object to keep alive, and its byte size when known)."""
    if isinstance(obj, bool):
        raise TypeError("addrs must be int, torch.Tensor or numpy.ndarray")
    if isinstance(obj, int):
        return obj, None, None
    if hasattr(obj, "data_ptr") and hasattr(obj, "is_contiguous"):  # torch.Tensor
        raise_if_false(obj.is_contiguous(), "a registered tensor must be contiguous")
        device = getattr(obj, "device", None)
        if device is not None and device.type not in ("cpu", "cuda"):
            raise LLMException(f"tensor on {device} cannot be registered (cpu or cuda only)",
                               status_code=LLMStatusCode.LLM_PARAM_INVALID)
        # A CUDA tensor's pointer is GPU memory: the C++ side registers it as
        # such (placement DEVICE) where the build has CUDA, else refuses it.
        return int(obj.data_ptr()), obj, obj.numel() * obj.element_size()
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:  # CuPy, Numba and other CUDA arrays
        raise_if_false(cai.get("strides") is None, "a registered CUDA array must be C-contiguous")
        raise_if_false(not cai["data"][1], "a registered CUDA array must be writable")
        import math
        nbytes = math.prod(cai["shape"]) * int(cai["typestr"][2:])
        return int(cai["data"][0]), obj, nbytes
    ai = getattr(obj, "__array_interface__", None)
    if ai is not None:  # numpy.ndarray and friends
        raise_if_false(obj.flags["C_CONTIGUOUS"], "a registered array must be C-contiguous")
        raise_if_false(not ai["data"][1], "a registered array must be writable")
        return int(ai["data"][0]), obj, obj.nbytes
    raise TypeError(f"addrs must be int, torch.Tensor, numpy.ndarray or a __cuda_array_interface__ object, "
                    f"not {type(obj).__name__}")


def _ext(src_layer_range, dst_layer_range, tensor_num_per_layer):
    def pair(r, name):
        if r is None:
            return -1, -1
        raise_if_false(isinstance(r, range) and r.step == 1 and len(r) > 0 and r.start >= 0,
                       f"{name} should be a non-empty range with step 1")
        return r.start, r.stop - 1
    if isinstance(tensor_num_per_layer, bool) or not isinstance(tensor_num_per_layer, int):
        raise TypeError("tensor_num_per_layer should be int")
    raise_if_false(0 < tensor_num_per_layer < 256, f"tensor_num_per_layer ({tensor_num_per_layer}) is invalid")
    s, d = pair(src_layer_range, "src_layer_range"), pair(dst_layer_range, "dst_layer_range")
    return (s[0], s[1], d[0], d[1], tensor_num_per_layer)


def _int_list(name, values):
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} should be list or tuple")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} should contain int")
        raise_if_false(0 <= v < 2**64, f"{name} has an invalid block index {v}")
    return list(values)


class _Entry:
    __slots__ = ("cache_id", "batch", "slot", "generation")

    def __init__(self, cache_id, batch, slot, generation):
        self.cache_id, self.batch, self.slot, self.generation = cache_id, batch, slot, generation


class _Directory:
    """This instance's key table and release inbox (owner side), and the
    peer-table reader and release sender (puller side)."""

    def __init__(self, engine):
        self._engine = engine
        self._lock = threading.Lock()
        self._entries = {}  # (kind, model_id, req_id, prefix_id) -> _Entry
        self._free_slots = list(range(_DIR_MAX - 1, -1, -1))
        self._generation = 0
        self._seq = 0
        self._read_lock = threading.Lock()
        self._resolved = {}  # (cluster, kind, model_id) -> (cache_id, batch, slot, generation) for blocks keys
        self._note_lock = threading.Lock()
        from llm_datadist import _llm_datadist as native
        ids, views = [], []
        for what, shape in (("key directory", [1, _DIR_BYTES]), ("key directory scratch", [1, _DIR_BYTES]),
                            ("release inbox", [_DIR_MAX, _NOTE.size]), ("release staging", [1, _NOTE.size])):
            st, cache_id, addrs = engine.allocate_library(int(Placement.HOST), 1, DataType.DT_UINT8.value, shape)
            handle_llm_status(st, f"[init] {what}")
            ids.append(cache_id)
            views.append(native.memory_view(addrs[0], shape[0] * shape[1]))
        raise_if_false(ids[0] == DIRECTORY_CACHE_ID and ids[2] == INBOX_CACHE_ID,
                       f"key directory and inbox got cache ids {ids[0]} and {ids[2]}, expected "
                       f"{DIRECTORY_CACHE_ID} and {INBOX_CACHE_ID}",
                       status_code=LLMStatusCode.LLM_FAILED)
        self._mem, self._scratch, self._inbox, self._note = views
        self._scratch_id, self._note_id = ids[1], ids[3]
        self._publish()

    def _publish(self):
        items = list(self._entries.items())
        body = b"".join(_DIR_ENTRY.pack(k[0], e.slot, k[1], k[2], k[3], e.cache_id, e.batch, e.generation)
                        for k, e in items)
        self._seq += 1
        crc = zlib.crc32(struct.pack("<QI", self._seq, len(items)) + body)
        end = _DIR_HEAD.size + len(body)
        self._mem[_DIR_HEAD.size:end] = body
        self._mem[0:_DIR_HEAD.size] = _DIR_HEAD.pack(_DIR_MAGIC, self._seq, len(items), crc)

    def add(self, keys, cache_id):
        with self._lock:
            for k, batch in keys:
                raise_if_false(k not in self._entries, f"cache key {k} is already in use")
            raise_if_false(len(keys) <= len(self._free_slots), f"more than {_DIR_MAX} cache keys",
                           status_code=LLMStatusCode.LLM_OUT_OF_MEMORY)
            for k, batch in keys:
                slot = self._free_slots.pop()
                self._generation += 1
                self._inbox[slot * _NOTE.size:(slot + 1) * _NOTE.size] = bytes(_NOTE.size)
                self._entries[k] = _Entry(cache_id, batch, slot, self._generation)
            self._publish()

    def _drop(self, k):
        e = self._entries.pop(k)
        self._free_slots.append(e.slot)
        return e.cache_id

    def remove_key(self, k):
        """Drops key k; returns the cache id it held, or None."""
        with self._lock:
            if k not in self._entries:
                return None
            cache_id = self._drop(k)
            self._publish()
            return cache_id

    def remove_cache(self, cache_id):
        with self._lock:
            dead = [k for k, e in self._entries.items() if e.cache_id == cache_id]
            for k in dead:
                self._drop(k)
            if dead:
                self._publish()

    def holds(self, cache_id):
        with self._lock:
            return any(e.cache_id == cache_id for e in self._entries.values())

    def take_released(self):
        """Drops the keys whose pullers sent a release note; returns the
        cache ids they held."""
        with self._lock:
            released = []
            for k, e in self._entries.items():
                magic, generation = _NOTE.unpack_from(self._inbox, e.slot * _NOTE.size)
                if magic == _NOTE_MAGIC and generation == e.generation:
                    released.append(k)
            cache_ids = [self._drop(k) for k in released]
            if released:
                self._publish()
            return cache_ids

    def send_release(self, cluster_id, slot, generation):
        """Tells the owner that our pull by a CacheKey used it up (best
        effort: the pull itself has succeeded either way)."""
        ext = (-1, -1, -1, -1, _NUM_TENSORS_PER_LAYER)
        with self._note_lock:
            self._note[0:_NOTE.size] = _NOTE.pack(_NOTE_MAGIC, generation)
            return self._engine.push_cache(self._note_id, 0, cluster_id, INBOX_CACHE_ID, slot, -1, ext)

    def forget(self, cluster_id=None):
        with self._read_lock:
            if cluster_id is None:
                self._resolved.clear()
            else:
                for k in [k for k in self._resolved if k[0] == cluster_id]:
                    del self._resolved[k]

    def _read_remote(self, cluster_id):
        """The peer's table as {key: (cache_id, batch)} (GIL released while pulling)."""
        ext = (-1, -1, -1, -1, _NUM_TENSORS_PER_LAYER)
        for _ in range(50):
            st = self._engine.pull_cache(cluster_id, DIRECTORY_CACHE_ID, 0, self._scratch_id, 0, _FIRST_READ, ext)
            handle_llm_status(st, "[resolve cache key]", f"reading the key directory of cluster {cluster_id}")
            magic, seq, count, crc = _DIR_HEAD.unpack_from(self._scratch, 0)
            if magic != _DIR_MAGIC:
                raise LLMException(f"cluster {cluster_id} publishes no cache keys",
                                   status_code=LLMStatusCode.LLM_KV_CACHE_NOT_EXIST)
            need = _DIR_HEAD.size + count * _DIR_ENTRY.size
            if count > _DIR_MAX:
                time.sleep(0.001)
                continue
            if need > _FIRST_READ:
                st = self._engine.pull_cache(cluster_id, DIRECTORY_CACHE_ID, 0, self._scratch_id, 0, need, ext)
                handle_llm_status(st, "[resolve cache key]", f"reading the key directory of cluster {cluster_id}")
                magic, seq, count2, crc = _DIR_HEAD.unpack_from(self._scratch, 0)
                if count2 != count:
                    continue
            body = bytes(self._scratch[_DIR_HEAD.size:need])
            if zlib.crc32(struct.pack("<QI", seq, count) + body) != crc:
                time.sleep(0.001)  # torn read: the owner was updating it
                continue
            table = {}
            for i in range(count):
                kind, slot, model_id, req_id, prefix_id, cache_id, batch, generation = _DIR_ENTRY.unpack_from(
                    body, i * _DIR_ENTRY.size)
                table[(kind, model_id, req_id, prefix_id)] = (cache_id, batch, slot, generation)
            return table
        raise LLMException(f"the key directory of cluster {cluster_id} kept changing while read",
                           status_code=LLMStatusCode.LLM_TIMEOUT)

    def resolve(self, cluster_id, k, use_cache):
        """(cache_id, batch_index, slot, generation) of key k on peer cluster_id."""
        memo = (cluster_id,) + k
        with self._read_lock:
            if use_cache and memo in self._resolved:
                return self._resolved[memo]
            table = self._read_remote(cluster_id)
            hit = table.get(k)
            if hit is None:
                raise LLMException(f"cluster {cluster_id} has no cache with key {_describe(k)}",
                                   status_code=LLMStatusCode.LLM_KV_CACHE_NOT_EXIST)
            if use_cache:
                self._resolved[memo] = hit
            return hit


def _describe(k):
    if k[0] == _KIND_BLOCKS:
        return f"BlocksCacheKey(model_id={k[1]})"
    return f"CacheKey(req_id={k[2]}, prefix_id={k[3]}, model_id={k[1]})"


def _blocks_key(key: BlocksCacheKey):
    return (_KIND_BLOCKS, key.model_id, 0, 0)


def _cache_key(key: CacheKey):
    return (_KIND_CACHE, key.model_id, key.req_id, key.prefix_id)


class CacheManager:
    """Cache operations; get it from LLMDataDist.cache_manager."""

    def __init__(self, engine, options):
        self._engine = engine
        self._initialized = True
        self._directory = _Directory(engine)
        self._caches: Dict[int, Cache] = {}
        self._orphans = set()  # allocated caches dropped by id, still held by keys
        self._lock = threading.Lock()

    @staticmethod
    def check_cache_key(cache_key: CacheKey) -> None:
        """As the vendor's: a CacheKey names a request or a prefix, exactly
        one of them (LLM_PARAM_INVALID otherwise)."""
        has_req = cache_key.req_id != _INVALID_ID
        has_prefix = cache_key.prefix_id != _INVALID_ID
        raise_if_false(has_req or has_prefix,
                       f"one of req id and prefix id should contain valid value:[0, 2**64-1), "
                       f"req id:{cache_key.req_id}, prefix id:{cache_key.prefix_id}.")
        raise_if_false(not (has_req and has_prefix),
                       f"only one of req id and prefix id should contain valid value:[0, 2**64-1), "
                       f"req id:{cache_key.req_id}, prefix id:{cache_key.prefix_id}.")

    # --- allocation and registration ---

    def _check(self):
        if not self._initialized:
            raise LLMException("llm datadist is finalized", status_code=LLMStatusCode.LLM_FAILED)
        for cache_id in self._directory.take_released():
            self._free_if_orphan(cache_id)

    def _free_if_orphan(self, cache_id):
        """Frees an allocated cache its owner already dropped once no key holds it."""
        if cache_id is None or self._directory.holds(cache_id):
            return
        with self._lock:
            orphan = cache_id in self._orphans
            self._orphans.discard(cache_id)
        if orphan:
            st = self._engine.deallocate(cache_id)
            if st != LLMStatusCode.LLM_SUCCESS:  # not the current call's failure: logged, not raised
                _log.warning("could not free cache %d after its last key went (status %s)", cache_id, st)

    def _allocate(self, cache_desc, keys, is_blocks, what):
        self._check()
        if not isinstance(cache_desc, CacheDesc):
            raise TypeError("cache_desc should be CacheDesc")
        raise_if_false(cache_desc.num_tensors > 0, "num_tensors should be bigger than zero.")
        st, cache_id, addrs = self._engine.allocate(int(cache_desc.placement), cache_desc.num_tensors,
                                                    cache_desc.data_type.value, list(cache_desc.shape))
        handle_llm_status(st, what, f"cache_desc = {cache_desc}")
        cache = Cache(cache_id, cache_desc, addrs, self, False, is_blocks)
        self._publish_keys(cache, keys, what)
        return cache

    def _publish_keys(self, cache, keys, what):
        if not keys:
            with self._lock:
                self._caches[cache.cache_id] = cache
            return
        try:
            self._directory.add(keys, cache.cache_id)
        except Exception:
            if cache._is_registered:
                self._engine.unregister(cache.cache_id)
            else:
                self._engine.deallocate(cache.cache_id)
            raise
        with self._lock:
            self._caches[cache.cache_id] = cache

    def allocate_cache(self, cache_desc: CacheDesc, cache_keys: Union[Tuple[CacheKey], List[CacheKey]] = ()) -> Cache:
        if not isinstance(cache_keys, (list, tuple)) or not all(isinstance(k, CacheKey) for k in cache_keys):
            raise TypeError("cache_keys should be a list or tuple of CacheKey")
        keys = [(_cache_key(k), i) for i, k in enumerate(cache_keys) if k.req_id != _INVALID_ID or k.prefix_id != _INVALID_ID]
        return self._allocate(cache_desc, keys, False, "[allocate_cache]")

    def allocate_blocks_cache(self, cache_desc: CacheDesc, blocks_cache_key: Optional[BlocksCacheKey] = None) -> Cache:
        if blocks_cache_key is not None and not isinstance(blocks_cache_key, BlocksCacheKey):
            raise TypeError("blocks_cache_key should be BlocksCacheKey")
        keys = [(_blocks_key(blocks_cache_key), 0)] if blocks_cache_key is not None else []
        return self._allocate(cache_desc, keys, True, "[allocate_blocks_cache]")

    def _register(self, cache_desc, addrs, keys, is_blocks, what):
        self._check()
        if not isinstance(cache_desc, CacheDesc):
            raise TypeError("cache_desc should be CacheDesc")
        if not isinstance(addrs, (list, tuple)):
            raise TypeError("addrs should be a list")
        raise_if_false(len(addrs) > 0, "addrs can not be empty.")
        raise_if_false(len(addrs) == cache_desc.num_tensors, "addrs length should be equal to num_tensors.")
        ints, owners = [], []
        need = cache_desc.size
        for a in addrs:
            on_gpu = getattr(getattr(a, "device", None), "type", None) == "cuda" or hasattr(
                a, "__cuda_array_interface__")
            raise_if_false(not on_gpu or cache_desc.placement == Placement.DEVICE,
                           "GPU memory must be registered with placement DEVICE")
            addr, owner, nbytes = _addr_of(a)
            raise_if_false(addr != 0, "addr can not be zero.")
            if nbytes is not None:
                raise_if_false(nbytes >= need, f"a tensor of {nbytes} bytes is smaller than the cache_desc's {need}")
                owners.append(owner)
            ints.append(addr)
        st, cache_id = self._engine.register(int(cache_desc.placement), cache_desc.num_tensors,
                                             cache_desc.data_type.value, list(cache_desc.shape), ints)
        handle_llm_status(st, what, f"cache_desc = {cache_desc}")
        cache = Cache(cache_id, cache_desc, ints, self, True, is_blocks, owners)
        self._publish_keys(cache, keys, what)
        return cache

    def register_cache(self, cache_desc: CacheDesc, addrs: List[int],
                       cache_keys: Union[Tuple[CacheKey], List[CacheKey]] = (),
                       remote_accessible: Optional[bool] = None) -> Cache:
        """addrs: ints (data pointers), torch CPU tensors or numpy arrays."""
        keys = [(_cache_key(k), i) for i, k in enumerate(cache_keys) if k.req_id != _INVALID_ID or k.prefix_id != _INVALID_ID]
        return self._register(cache_desc, addrs, keys, False, "[register_cache]")

    def register_blocks_cache(self, cache_desc: CacheDesc, addrs: List[int],
                              blocks_cache_key: Optional[BlocksCacheKey] = None,
                              remote_accessible: Optional[bool] = None) -> Cache:
        if blocks_cache_key is not None and not isinstance(blocks_cache_key, BlocksCacheKey):
            raise TypeError("blocks_cache_key should be BlocksCacheKey")
        keys = [(_blocks_key(blocks_cache_key), 0)] if blocks_cache_key is not None else []
        return self._register(cache_desc, addrs, keys, True, "[register_blocks_cache]")

    def _release(self, cache_id, registered, what):
        self._check()
        with self._lock:
            known = self._caches.get(cache_id)
        if not registered and (known is None or not known._is_registered) and self._directory.holds(cache_id):
            # Allocated memory that keys still hold stays until they go
            # (pulled or removed). Registered memory is the caller's: it is
            # unregistered now, keys and all, as the vendor's unregister_cache.
            with self._lock:
                self._orphans.add(cache_id)
            self._free_if_orphan(cache_id)  # its last key may have gone meanwhile
        else:
            st = self._engine.unregister(cache_id) if registered else self._engine.deallocate(cache_id)
            handle_llm_status(st, what, f"cache_id = {cache_id}")
            self._directory.remove_cache(cache_id)
        with self._lock:
            cache = self._caches.pop(cache_id, None)
        if cache is not None:
            cache._valid = False
            cache._tensor_addrs = []
            cache._owners = []

    def deallocate_cache(self, cache: Cache) -> None:
        if not isinstance(cache, Cache):
            raise TypeError("cache should be Cache")
        self._release(cache.cache_id, False, "[deallocate_cache]")

    def deallocate_blocks_cache(self, cache: Cache) -> None:
        self.deallocate_cache(cache)

    def unregister_cache(self, cache_id: int) -> None:
        if isinstance(cache_id, bool) or not isinstance(cache_id, int):
            raise TypeError("cache_id should be int")
        self._release(cache_id, True, "[unregister_cache]")

    def remove_cache_key(self, cache_key: CacheKey) -> None:
        """After it, the key no longer resolves; a cache already dropped by
        deallocate_cache is freed once none of its keys is left."""
        if not isinstance(cache_key, CacheKey):
            raise TypeError("cache_key should be CacheKey")
        self._check()
        self._free_if_orphan(self._directory.remove_key(_cache_key(cache_key)))

    # --- transfers: every one releases the GIL inside the C++ call ---

    def _remote(self, key, blocks):
        """(cluster_id, cache_id, batch_index, cacheable, (slot, generation)) of a
        peer's cache; the last is None unless the key is a CacheKey."""
        if isinstance(key, CacheKeyByIdAndIndex):
            return key.cluster_id, key.cache_id, key.batch_index, False, None
        if isinstance(key, BlocksCacheKey):
            cid, batch, _, _ = self._directory.resolve(key.cluster_id, _blocks_key(key), True)
            return key.cluster_id, cid, batch, True, None
        if isinstance(key, CacheKey):
            raise_if_false(not blocks, "a CacheKey names a contiguous cache, not blocks")
            cid, batch, slot, generation = self._directory.resolve(key.cluster_id, _cache_key(key), False)
            return key.cluster_id, cid, batch, False, (slot, generation)
        raise TypeError("cache key should be CacheKey, CacheKeyByIdAndIndex or BlocksCacheKey")

    def _with_key(self, key, blocks, call, what):
        """Runs call(cluster, cache_id, batch); a stale memoised key
        (KV_CACHE_NOT_EXIST) is resolved once more. Returns the key's
        (slot, generation) for a CacheKey, else None."""
        self._check()
        cluster, cid, batch, cached, release = self._remote(key, blocks)
        st = call(cluster, cid, batch)
        if st == LLMStatusCode.LLM_KV_CACHE_NOT_EXIST and cached:
            self._directory.forget(cluster)
            cluster, cid, batch, _, release = self._remote(key, blocks)
            st = call(cluster, cid, batch)
        handle_llm_status(st, what, f"key = {key}")
        return release

    def pull_cache(self, cache_key: Union[CacheKey, CacheKeyByIdAndIndex], cache: Cache, batch_index: int = 0,
                   size: int = -1, **kwargs) -> None:
        if not isinstance(cache, Cache):
            raise TypeError("cache should be Cache")
        raise_if_false(size == -1 or size > 0, f"[pull_cache] size ({size}) is invalid, should be = -1 or > 0")
        if isinstance(cache_key, CacheKey):
            CacheManager.check_cache_key(cache_key)
        ext = _ext(kwargs.get("src_layer_range"), kwargs.get("dst_layer_range"),
                   kwargs.get("tensor_num_per_layer", _NUM_TENSORS_PER_LAYER))
        release = self._with_key(cache_key, False, lambda cl, cid, b: self._engine.pull_cache(
            cl, cid, b, cache.cache_id, batch_index, size, ext), "[pull_cache]")
        self._release_key(cache_key, release, "[pull_cache]")

    def _release_key(self, cache_key, release, what):
        if release is not None:
            # As the vendor's: a pull by CacheKey uses the key up.
            st = self._directory.send_release(cache_key.cluster_id, *release)
            if st != LLMStatusCode.LLM_SUCCESS:
                _log.warning("%s pulled, but could not release key %s on cluster %d (status %s)",
                             what, cache_key, cache_key.cluster_id, st)

    def _pull_row_into_blocks(self, cluster, cache_id, batch, dst_cache, dst_blocks, ext):
        """The vendor's cache-to-blocks pull: batch `batch` of each tensor of
        a peer's contiguous cache, cut into blocks of dst_cache's block size,
        lands in dst_blocks in order (the row must be exactly
        len(dst_blocks) blocks). Staged through host memory registered
        twice, as one row for the pull and as blocks for the local copy, so
        that any placement of dst_cache works."""
        return staging.RowToBlocks(self._engine, dst_cache, dst_blocks, ext).run(cluster, cache_id, batch)

    def pull_blocks(self, src_cache_key: Union[CacheKey, CacheKeyByIdAndIndex, BlocksCacheKey], dst_cache: Cache,
                    src_blocks: Union[Tuple[int], List[int]] = (), dst_blocks: Union[Tuple[int], List[int]] = (),
                    **kwargs):
        if not isinstance(dst_cache, Cache):
            raise TypeError("dst_cache should be Cache")
        src, dst = _int_list("src_blocks", src_blocks), _int_list("dst_blocks", dst_blocks)
        raise_if_false(len(dst) > 0, "dst_blocks can not be empty.")
        ext = _ext(kwargs.get("src_layer_range"), kwargs.get("dst_layer_range"),
                   kwargs.get("tensor_num_per_layer", _NUM_TENSORS_PER_LAYER))
        if isinstance(src_cache_key, BlocksCacheKey):
            raise_if_false(len(src) > 0, "src_blocks can not be empty.")
        elif isinstance(src_cache_key, CacheKey) and src:
            CacheManager.check_cache_key(src_cache_key)
            raise LLMException("src_blocks should be empty when src_cache_key is not instance of BlocksCacheKey.",
                               status_code=LLMStatusCode.LLM_PARAM_INVALID)
        elif not src:
            if isinstance(src_cache_key, CacheKey):
                CacheManager.check_cache_key(src_cache_key)
            # The vendor's cache-to-blocks pull. (Ours also takes a
            # CacheKeyByIdAndIndex with src_blocks: a blocks cache by id.)
            release = self._with_key(src_cache_key, False, lambda cl, cid, b: self._pull_row_into_blocks(
                cl, cid, b, dst_cache, dst, ext), "[pull_blocks]")
            self._release_key(src_cache_key, release, "[pull_blocks]")
            return
        self._with_key(src_cache_key, True, lambda cl, cid, b: self._engine.pull_blocks(
            cl, cid, dst_cache.cache_id, src, dst, ext), "[pull_blocks]")

    def push_cache(self, dst_cache_key: CacheKeyByIdAndIndex, src_cache: Cache, src_batch_index: int = 0,
                   src_layer_range: range = None, dst_layer_range: range = None, size: int = -1,
                   tensor_num_per_layer=_NUM_TENSORS_PER_LAYER) -> None:
        if not isinstance(src_cache, Cache):
            raise TypeError("src_cache should be Cache")
        if not isinstance(dst_cache_key, (CacheKeyByIdAndIndex, CacheKey)):
            raise TypeError("dst_cache_key should be CacheKeyByIdAndIndex")
        raise_if_false(size == -1, f"[push_cache] size ({size}) is invalid, should be = -1.")
        ext = _ext(src_layer_range, dst_layer_range, tensor_num_per_layer)
        self._with_key(dst_cache_key, False, lambda cl, cid, b: self._engine.push_cache(
            src_cache.cache_id, src_batch_index, cl, cid, b, size, ext), "[push_cache]")

    def push_blocks(self, dst_cache_key: BlocksCacheKey, src_cache: Cache,
                    src_blocks: Union[Tuple[int], List[int]] = (), dst_blocks: Union[Tuple[int], List[int]] = (),
                    src_layer_range: range = None, dst_layer_range: range = None,
                    tensor_num_per_layer=_NUM_TENSORS_PER_LAYER):
        if not isinstance(src_cache, Cache):
            raise TypeError("src_cache should be Cache")
        if not isinstance(dst_cache_key, (BlocksCacheKey, CacheKeyByIdAndIndex)):
            raise TypeError("dst_cache_key should be BlocksCacheKey")
        src, dst = _int_list("src_blocks", src_blocks), _int_list("dst_blocks", dst_blocks)
        raise_if_false(len(dst) > 0, "dst_blocks can not be empty.")
        ext = _ext(src_layer_range, dst_layer_range, tensor_num_per_layer)
        self._with_key(dst_cache_key, True, lambda cl, cid, b: self._engine.push_blocks(
            src_cache.cache_id, cl, cid, src, dst, ext), "[push_blocks]")

    def copy_cache(self, dst: Cache, src: Cache, dst_batch_index: int = 0, src_batch_index: int = 0,
                   offset: int = 0, size: int = -1, req_id: Optional[int] = None) -> None:
        self._check()
        if not isinstance(dst, Cache) or not isinstance(src, Cache):
            raise TypeError("dst and src should be Cache")
        raise_if_false(size == -1 or size > 0, f"[copy_cache] size ({size}) is invalid, should be = -1 or > 0")
        raise_if_false(offset >= 0, f"[copy_cache] offset ({offset}) is invalid")
        st = self._engine.copy_cache(src.cache_id, dst.cache_id, src_batch_index, dst_batch_index, offset, size)
        handle_llm_status(st, "[copy_cache]", f"src = {src.cache_id}, dst = {dst.cache_id}")

    def copy_blocks(self, cache: Cache, copy_block_info: Dict[int, List[int]]):
        """Within one paged cache: block src -> each block of copy_block_info[src]."""
        self._check()
        if not isinstance(cache, Cache):
            raise TypeError("cache should be Cache")
        if not isinstance(copy_block_info, dict):
            raise TypeError("copy_block_info should be dict")
        src, dst = [], []
        for s, ds in copy_block_info.items():
            for d in _int_list("copy_block_info value", ds):
                src.append(s)
                dst.append(d)
        src = _int_list("copy_block_info key", src)
        raise_if_false(len(src) > 0, "copy_block_info can not be empty.")
        st = self._engine.copy_blocks(cache.cache_id, cache.cache_id, src, [dst])
        handle_llm_status(st, "[copy_blocks]", f"cache id is:{cache.cache_id}")

    def remap_registered_memory(self, mem_infos: Union[MemInfo, list]) -> None:
        """The vendor's re-registers device memory with the NIC after a
        memory fault (UCE) moved its physical pages. Every data path here
        addresses registered memory by virtual address, so after the
        application has restored the memory there is nothing to re-map: this
        checks the arguments as the vendor's does, and that each range lies
        in a registered cache."""
        self._check()
        raise_if_false(isinstance(mem_infos, (list, MemInfo)),
                       f"mem_infos type only support list of MemInfo or MemInfo, but got {type(mem_infos)}.")
        infos = mem_infos if isinstance(mem_infos, list) else [mem_infos]
        with self._lock:
            spans = [(a, a + c.cache_desc.size) for c in self._caches.values() if c._is_registered
                     for a in c.tensor_addrs]
        for i, m in enumerate(infos):
            raise_if_false(isinstance(m, MemInfo), f"mem_infos[{i}] type only support MemInfo, but got {type(m)}.")
            raise_if_false(m.mem_type == Memtype.MEM_TYPE_DEVICE,
                           f"check mem_info.mem_type failed, only support Memtype.MEM_TYPE_DEVICE, index={i}.")
            raise_if_false(m.addr != 0, f"check mem_info.addr failed, addr can not be zero, index={i}.")
            raise_if_false(m.size > 0, f"check mem_info.size failed, size must be > 0, index={i}.")
            raise_if_false(any(lo <= m.addr and m.addr + m.size <= hi for lo, hi in spans),
                           f"mem_infos[{i}] (addr {m.addr:#x}, size {m.size}) is not inside a registered cache")

    def swap_blocks(self, src_cache: Cache, dst_cache: Cache, src_to_dst: Dict[int, int]) -> None:
        """Copies blocks between a host and a device cache (either may be a
        Cache.create_cpu_cache cache), or between two host caches (ours; the
        vendor's allows only host <-> device): block s of src_cache into
        block src_to_dst[s] of dst_cache, for every tensor."""
        self._check()
        if not isinstance(src_cache, Cache) or not isinstance(dst_cache, Cache):
            raise TypeError("src_cache and dst_cache should be Cache")
        if not isinstance(src_to_dst, dict):
            raise TypeError("src_to_dst should be dict")
        raise_if_false(src_cache.is_blocks_cache, "param check failed, src cache should be blocks cache.")
        raise_if_false(dst_cache.is_blocks_cache, "param check failed, dst cache should be blocks cache.")
        sd, dd = src_cache.cache_desc, dst_cache.cache_desc
        src_block, dst_block = sd.size // sd.batch_size, dd.size // dd.batch_size
        raise_if_false(src_block == dst_block,
                       f"src block size:{src_block} and dst block size:{dst_block} must be equal")
        raise_if_false(sd.num_tensors == dd.num_tensors,
                       f"src num_tensors:{sd.num_tensors} and dst num_tensors:{dd.num_tensors} must be equal")
        raise_if_false(len(src_to_dst) > 0, "src_to_dst can not be empty.")
        for s, d in src_to_dst.items():
            for v, name in ((s, "src_block_index"), (d, "dst_block_index")):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError("src_to_dst should map int to int")
            raise_if_false(0 <= s < sd.batch_size, f"src_block_index:{s} must be in [0, {sd.batch_size})")
            raise_if_false(0 <= d < dd.batch_size, f"dst_block_index:{d} must be in [0, {dd.batch_size})")
        raise_if_false(sd.placement == Placement.HOST or dd.placement == Placement.HOST,
                       f"swap src placement:{sd.placement} to dst placement:{dd.placement} is not support")
        st = staging.swap_blocks(self._engine, src_cache, dst_cache, src_to_dst)
        handle_llm_status(st, "[swap_blocks]", "swap blocks failed")

    def transfer_cache_async(self, src_cache: Cache, layer_synchronizer, transfer_configs,
                             src_block_indices=None, dst_block_indices=None, dst_block_memory_size=None):
        """Sends src_cache layer by layer to each destination of
        transfer_configs, each layer as soon as layer_synchronizer releases
        it; returns a CacheTask at once. See transfer_async.py."""
        self._check()
        if not isinstance(src_cache, Cache):
            raise TypeError("src_cache should be Cache")
        return transfer_async.start(self, src_cache, layer_synchronizer, transfer_configs, src_block_indices,
                                    dst_block_indices, dst_block_memory_size)

    def set_is_call_linked(self):
        pass

    def _finalized(self):
        self._initialized = False
        with self._lock:
            for c in self._caches.values():
                c._valid = False
            self._caches.clear()
