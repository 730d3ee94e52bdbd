"""Byte ranges for the layer-wise transfers the C++ push calls do not
cover: to raw destination addresses (TransferConfig) and from a contiguous
cache into blocks. Each layer becomes a list of
(src_tensor, src_offset, length, dst_cache_id, dst_tensor, dst_offset)
for the engine's push_ranges; dst_cache_id 0 names an address of the peer's
process in dst_offset, which the peer resolves against its own caches (so
only memory it allocated or registered is reachable).

Shapes as the vendor's: a contiguous cache's row is batch `src_batch_index`
of each tensor (tensor bytes / batch size); a blocks cache's block is a
row. Cache to blocks cuts the row into pieces of dst_block_memory_size
bytes, piece j into destination block dst_blocks[j] (the last piece may be
short)."""
from llm_datadist.data_type import DataType, ITEM_SIZE
from llm_datadist.status import LLMStatusCode, handle_llm_status, raise_if_false

_NUM_TENSORS_PER_LAYER = 2


def _row_bytes(desc):
    return desc.size // desc.batch_size


def row_to_blocks_pieces(row_bytes, block_bytes, dst_blocks):
    """(offset in the row, length, destination block) of each piece."""
    raise_if_false(0 < block_bytes <= row_bytes,
                   f"dst_block_memory_size ({block_bytes}) must be > 0 and <= the source row ({row_bytes} bytes) "
                   "when transferring from a contiguous cache to blocks")
    num = -(-row_bytes // block_bytes)
    raise_if_false(len(dst_blocks) <= num, f"the row cut into {block_bytes}-byte blocks is {num} blocks, "
                   f"fewer than the {len(dst_blocks)} dst_block_indices")
    return [(j * block_bytes, min(block_bytes, row_bytes - j * block_bytes), b) for j, b in enumerate(dst_blocks)]


class AddressPlan:
    """One TransferConfig: layer i of its src_layer_range goes to dst_addrs[2i], dst_addrs[2i + 1]."""

    def __init__(self, src_desc, config, src_range, src_blocks, dst_blocks, block_bytes):
        self._row = _row_bytes(src_desc)
        self._src_off = config.src_batch_index * self._row
        self._addrs = config.dst_addrs
        self._first = src_range.start
        if src_blocks:  # blocks -> blocks: the destination blocks are the source's size
            raise_if_false(block_bytes in (0, self._row),
                           f"dst_block_memory_size ({block_bytes}) is not the source block size ({self._row})")
            self._pieces = [(s * self._row, self._row, d) for s, d in zip(src_blocks, dst_blocks)]
            self._block = self._row
            self._src_off = 0
        elif dst_blocks:
            self._pieces = row_to_blocks_pieces(self._row, block_bytes, dst_blocks)
            self._block = block_bytes
        else:
            self._pieces = [(0, self._row, 0)]
            self._block = 0

    def ranges(self, layer):
        out = []
        for k in range(_NUM_TENSORS_PER_LAYER):
            base = self._addrs[(layer - self._first) * _NUM_TENSORS_PER_LAYER + k]
            t = layer * _NUM_TENSORS_PER_LAYER + k
            out += [(t, self._src_off + off, n, 0, 0, base + block * self._block) for off, n, block in self._pieces]
        return out


class CacheToBlocksPlan:
    """One TransferWithCacheKeyConfig into a peer's blocks cache from a
    contiguous source: the peer's block size must be the one given (0: take
    the peer's), its blocks and layers must exist."""

    def __init__(self, engine, src_desc, cluster, cache_id, config, dst_blocks, block_bytes):
        st, placement, num_tensors, data_type, shape = engine.remote_cache_desc(cluster, cache_id)
        handle_llm_status(st, "[transfer_cache_async]", f"describing cache {cache_id} of cluster {cluster}")
        item = ITEM_SIZE.get(DataType(data_type))
        raise_if_false(item is not None and shape, f"the peer's cache {cache_id} is not a blocks cache")
        num_blocks = shape[0]
        remote_block = item
        for d in shape[1:]:
            remote_block *= d
        raise_if_false(block_bytes in (0, remote_block), f"dst_block_memory_size ({block_bytes}) is not equal to "
                       f"the block size ({remote_block}) of the peer's cache {cache_id}")
        raise_if_false(max(dst_blocks) < num_blocks,
                       f"dst block index {max(dst_blocks)} is out of range [0, {num_blocks})")
        raise_if_false(config.dst_layer_range.stop * _NUM_TENSORS_PER_LAYER <= num_tensors,
                       f"dst_layer_range {config.dst_layer_range} is out of range, the peer's cache has "
                       f"{num_tensors // _NUM_TENSORS_PER_LAYER} layers")
        row = _row_bytes(src_desc)
        self._src_off = config.src_batch_index * row
        self._cache_id = cache_id
        self._block = remote_block
        self._pieces = row_to_blocks_pieces(row, remote_block, dst_blocks)

    def ranges(self, layer, dst_layer):
        out = []
        for k in range(_NUM_TENSORS_PER_LAYER):
            s, d = layer * _NUM_TENSORS_PER_LAYER + k, dst_layer * _NUM_TENSORS_PER_LAYER + k
            out += [(s, self._src_off + off, n, self._cache_id, d, block * self._block) for off, n, block in self._pieces]
        return out


def push(engine, src_cache, cluster, ranges, what):
    st = engine.push_ranges(src_cache.cache_id, cluster, ranges)
    handle_llm_status(st, what, f"to cluster {cluster}")
    return LLMStatusCode.LLM_SUCCESS
