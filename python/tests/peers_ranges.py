"""Roles for the layer-wise transfers built on byte ranges and for the
memory pool (test_ranges_and_pool.py). The owner (PROMPT, cluster 0)
carves its caches from a host memory pool; the sender (DECODER, cluster 1)
writes into them with transfer_cache_async (TransferConfig by raw address,
and cache to blocks by key and by address) and pulls one of them into its
blocks by CacheKey with layer ranges. Every byte is checked on both sides,
and each bad input is checked for its status, its message and that it
wrote nothing."""
import logging

import torch

from llm_datadist import (BlocksCacheKey, CacheDesc, CacheKey, DataType, LayerSynchronizer, LLMConfig, LLMDataDist,
                          LLMException, LLMRole, LLMStatusCode, Placement, TransferConfig, TransferWithCacheKeyConfig)
from peers import pattern
from peers_samples import _cluster

OWNER, SENDER = 0, 1
ROW = 128  # floats: a contiguous cache is 2 rows of 512 bytes per tensor
BLOCK = 64  # floats: a blocks cache is 4 blocks of 256 bytes per tensor
PAGE = 4096
POOL = 4 * PAGE  # each cache below takes one page


def _init(role, cluster_id, port, pool=None):
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.listen_ip_info = f"127.0.0.1:{port}"
    cfg.enable_cache_manager = True
    cfg.enable_remote_cache_accessible = True
    if pool:
        cfg.host_mem_pool_cfg = pool
    dd = LLMDataDist(role, cluster_id)
    dd.init(cfg.generate_options())
    return dd


def _src(t):
    return (torch.arange(2 * ROW, dtype=torch.float32) + 1000 * (t + 1)).reshape(2, ROW)


def _expected_blocks(t):
    s = _src(t)
    # Batch 0 -> blocks 0, 2 (by key); batch 1 -> blocks 3, 1 (by address).
    return torch.stack([s[0, :BLOCK], s[1, BLOCK:], s[0, BLOCK:], s[1, :BLOCK]])


def _host(shape, dtype=DataType.DT_FLOAT):
    return CacheDesc(num_tensors=4, shape=list(shape), data_type=dtype, placement=Placement.HOST)


class _Now(LayerSynchronizer):
    def synchronize_layer(self, layer_index, timeout_in_millis):
        return True


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.text = []

    def emit(self, record):
        self.text.append(record.getMessage())


def _raises(status, words, call):
    try:
        call()
    except LLMException as e:
        assert e.status_code == status and words in str(e), f"{e.status_code}: {e}"
        return
    raise AssertionError(f"no LLMException ({status}, {words!r})")


def owner(chan, port, sender_port):
    dd = _init(LLMRole.PROMPT, OWNER, port, f'{{"memory_size": {POOL}, "page_shift": 12}}')
    chan.sync("listening")
    cm = dd.cache_manager
    rows = cm.allocate_cache(_host([2, ROW]))
    blocks = cm.allocate_blocks_cache(_host([4, BLOCK]), BlocksCacheKey(OWNER, 0))
    keyed = cm.allocate_cache(_host([1, 512], DataType.DT_UINT8), [CacheKey(OWNER, req_id=7, model_id=0)])
    # The pool: one page left; a second cache does not fit until one is freed.
    extra = cm.allocate_cache(_host([1, 16]))
    _raises(LLMStatusCode.LLM_OUT_OF_MEMORY, "memory pool exhausted", lambda: cm.allocate_cache(_host([1, 16])))
    cm.deallocate_cache(extra)
    cm.deallocate_cache(cm.allocate_cache(_host([1, 16])))
    for i, t in enumerate(keyed.tensors()):
        t.copy_(pattern(18, i, 1, 512))
    chan.send((rows.tensor_addrs, blocks.tensor_addrs))
    chan.sync("ready")
    chan.sync("bad inputs sent")
    for t in rows.tensors() + blocks.tensors():
        assert not t.any(), "a refused transfer wrote"
    chan.sync("checked")
    chan.sync("sent")
    for t, (r, b) in enumerate(zip(rows.tensors(), blocks.tensors())):
        assert not r[0].any() and torch.equal(r[1], _src(t)[1]), f"rows tensor {t}"
        assert torch.equal(b, _expected_blocks(t)), f"blocks tensor {t}"
    chan.sync("verified")
    chan.sync("unlinked")
    for c in (rows, blocks, keyed):
        cm.deallocate_cache(c)
    dd.finalize()


def sender(chan, port, sender_port):
    dd = _init(LLMRole.DECODER, SENDER, sender_port)
    cm = dd.cache_manager
    errors = _Errors()
    logging.getLogger("llm_datadist").addHandler(errors)
    src_tensors = [_src(t) for t in range(4)]
    src = cm.register_cache(CacheDesc(4, [2, ROW], DataType.DT_FLOAT, Placement.DEVICE),
                            [t.data_ptr() for t in src_tensors])
    mine = [torch.ones(3, 256, dtype=torch.uint8) for _ in range(4)]
    dst = cm.register_blocks_cache(CacheDesc(4, [3, 256], DataType.DT_UINT8, Placement.DEVICE),
                                   [t.data_ptr() for t in mine])
    chan.sync("listening")
    ret, _ = dd.link_clusters([_cluster(OWNER, sender_port, port)], 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    row_addrs, block_addrs = chan.recv()
    chan.sync("ready")

    def run(configs, want, **kw):
        got = cm.transfer_cache_async(src, _Now(), configs, **kw).get_results(10000)
        assert got == [want], (got, errors.text)

    # Refused at once: two addresses for two layers; cache to blocks without a block size.
    _raises(LLMStatusCode.LLM_PARAM_INVALID, "expect 4 dst_addrs",
            lambda: cm.transfer_cache_async(src, _Now(), [TransferConfig(OWNER, row_addrs[:2])]))
    _raises(LLMStatusCode.LLM_PARAM_INVALID, "dst_block_memory_size must be set",
            lambda: cm.transfer_cache_async(src, _Now(), [TransferConfig(OWNER, block_addrs)], dst_block_indices=[0]))
    # Rows that would run past the end of the owner's tensors.
    bad = TransferConfig(OWNER, [a + 1024 - 100 for a in row_addrs])
    run([bad], LLMStatusCode.LLM_PARAM_INVALID)
    assert any("not inside a cache the peer allocated or registered" in e for e in errors.text), errors.text
    # A block size that is not the owner's.
    by_key = TransferWithCacheKeyConfig(BlocksCacheKey(OWNER, 0), range(0, 2), range(0, 2))
    run([by_key], LLMStatusCode.LLM_PARAM_INVALID, dst_block_indices=[0, 2], dst_block_memory_size=128)
    assert any("is not equal to the block size (256)" in e for e in errors.text), errors.text
    _raises(LLMStatusCode.LLM_PARAM_INVALID, "dst_layer_range ends at layer 2",
            lambda: cm.pull_blocks(CacheKey(OWNER, req_id=7, model_id=0), dst, [], [2, 0],
                                   src_layer_range=range(1, 2), dst_layer_range=range(2, 3)))
    assert all(torch.equal(t, torch.ones(3, 256, dtype=torch.uint8)) for t in mine), "a refused pull wrote"
    chan.sync("bad inputs sent")
    chan.sync("checked")

    ok = LLMStatusCode.LLM_SUCCESS
    run([TransferConfig(OWNER, [a + 512 for a in row_addrs], None, 1)], ok)
    run([by_key], ok, dst_block_indices=[0, 2], dst_block_memory_size=256)
    run([TransferConfig(OWNER, block_addrs, range(0, 2), 1)], ok, dst_block_indices=[3, 1], dst_block_memory_size=256)
    # The owner's layer 1 (tensors 2, 3) into our layer 0 (tensors 0, 1), blocks 2 then 0.
    cm.pull_blocks(CacheKey(OWNER, req_id=7, model_id=0), dst, [], [2, 0],
                   src_layer_range=range(1, 2), dst_layer_range=range(0, 1))
    for t in range(2):
        want = pattern(18, t + 2, 1, 512)[0]
        assert torch.equal(mine[t][2], want[:256]) and torch.equal(mine[t][0], want[256:]), f"tensor {t}"
        assert torch.equal(mine[t][1], torch.ones(256, dtype=torch.uint8)), f"tensor {t}: block 1 written"
    for t in (2, 3):
        assert torch.equal(mine[t], torch.ones(3, 256, dtype=torch.uint8)), f"tensor {t}: layer 1 written"
    chan.sync("sent")
    chan.sync("verified")
    ret, _ = dd.unlink_clusters([_cluster(OWNER, 0, port)], 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    chan.sync("unlinked")
    cm.unregister_cache(src.cache_id)
    cm.unregister_cache(dst.cache_id)
    dd.finalize()
