"""The roles the cross-process tests run, one function per process.

Each gets a Chan to its peer. Data is derived from a seed on both sides so
every byte moved can be checked where it lands.
"""
import json
import os
import random
import threading
import time

import torch

from conftest import freeze, queued_bytes, wait_for
from llm_datadist import (BlocksCacheKey, CacheDesc, CacheKey, CacheKeyByIdAndIndex, DataType, LLMClusterInfo,
                          LLMConfig, LLMDataDist, LLMException, LLMRole, LLMStatusCode, Placement,
                          RegisterMemStatus)

PROMPT, DECODER = 1, 2

# A small model-shaped paged cache: 4 layers of K and V, blocks of 16 tokens
# x 2 kv heads x 32 head dim in bf16 (2 KiB per block per tensor).
LAYERS = 4
NUM_TENSORS = 2 * LAYERS
BLOCK_ELEMS = 16 * 2 * 32
P_BLOCKS, D_BLOCKS = 24, 16


def pattern(seed, index, rows, row_bytes):
    """Deterministic random bytes for tensor `index` of a cache."""
    g = torch.Generator().manual_seed(seed * 1000 + index)
    return torch.randint(0, 256, (rows, row_bytes), dtype=torch.uint8, generator=g)


def kv_tensors(seed, blocks, fill=True):
    out = []
    for i in range(NUM_TENSORS):
        if fill:
            t = pattern(seed, i, blocks, BLOCK_ELEMS * 2).view(torch.bfloat16)
        else:
            t = torch.zeros(blocks, BLOCK_ELEMS, dtype=torch.bfloat16)
        out.append(t.contiguous())
    return out


def raw(t):
    return t.contiguous().view(torch.uint8)


def init(role, cluster_id, listen=None, cache_mgr=True, backend=None, timeout_ms=None, **extra):
    cfg = LLMConfig()
    cfg.device_id = 0
    if cache_mgr:
        cfg.enable_cache_manager = True
    if listen:
        cfg.listen_ip_info = listen
    if backend:
        cfg.transfer_backend = backend
    if timeout_ms:
        cfg.sync_kv_timeout = timeout_ms
    for k, v in extra.items():
        setattr(cfg, k, v)
    dd = LLMDataDist(LLMRole.PROMPT if role == PROMPT else LLMRole.DECODER, cluster_id)
    dd.init(cfg.generate_options())
    return dd


def link_to(dd, remote_cluster, port, timeout=5000):
    c = LLMClusterInfo()
    c.remote_cluster_id = remote_cluster
    c.append_remote_ip_info("127.0.0.1", port)
    ret, rets = dd.link_clusters([c], timeout)
    assert ret == LLMStatusCode.LLM_SUCCESS, (ret, rets)
    assert rets == [LLMStatusCode.LLM_SUCCESS]


def unlink_from(dd, remote_cluster, port=None, force=False):
    c = LLMClusterInfo()
    c.remote_cluster_id = remote_cluster
    if port:
        c.append_remote_ip_info("127.0.0.1", port)
    ret, rets = dd.unlink_clusters([c], 5000, force=force)
    assert ret == LLMStatusCode.LLM_SUCCESS, (ret, rets)


def expect_error(status, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except LLMException as e:
        assert e.status_code == status, f"expected {status}, got {e.status_code}: {e}"
        assert str(e), "the exception carries no message"
        return e
    raise AssertionError(f"expected LLMException({status}), nothing raised")


# --- model-shaped paged cache: pull and push, errors -------------------------

def kv_prefill(chan, backend="auto"):
    dd = init(PROMPT, PROMPT, listen="127.0.0.1:0", backend=backend)
    cm = dd.cache_manager
    tensors = kv_tensors(seed=1, blocks=P_BLOCKS)
    desc = CacheDesc(NUM_TENSORS, [P_BLOCKS, BLOCK_ELEMS], DataType.DT_BF16, Placement.HOST)
    cache = cm.register_blocks_cache(desc, tensors, BlocksCacheKey(PROMPT, 0))
    # A contiguous cache allocated by the library, filled through its
    # zero-copy tensor views, named by request ids.
    cdesc = CacheDesc(4, [2, 512], DataType.DT_FLOAT16, Placement.HOST)
    contig = cm.allocate_cache(cdesc, [CacheKey(PROMPT, req_id=10), CacheKey(PROMPT, req_id=11)])
    for i, t in enumerate(contig.tensors()):
        t.view(torch.uint8).copy_(pattern(2, i, 2, 1024))
    chan.send({"port": dd.listen_port(), "contig_id": contig.cache_id})
    chan.sync("pulled")
    # The decoder pushed its blocks [d0..] into our blocks [p0..], and
    # batch 0 of its contiguous cache into our batch 1.
    push = chan.recv()
    want = kv_tensors(seed=2, blocks=D_BLOCKS)
    for i in range(NUM_TENSORS):
        for s, d in zip(push["src"], push["dst"]):
            assert torch.equal(raw(tensors[i][d]), raw(want[i][s])), f"tensor {i} block {d} differs after push"
        untouched = [b for b in range(P_BLOCKS) if b not in push["dst"]]
        orig = kv_tensors(seed=1, blocks=P_BLOCKS)[i]
        assert torch.equal(raw(tensors[i][untouched]), raw(orig[untouched])), f"push wrote outside its blocks"
    for i, t in enumerate(contig.tensors()):
        assert torch.equal(t[1].view(torch.uint8), pattern(3, i, 1, 1024)[0]), "pushed batch differs"
        assert torch.equal(t[0].view(torch.uint8), pattern(2, i, 2, 1024)[0]), "push overwrote batch 0"
    chan.sync("verified")
    chan.sync("unlinked")
    cm.unregister_cache(cache.cache_id)
    cm.deallocate_cache(contig)
    dd.finalize()


def kv_decode(chan, backend="auto"):
    dd = init(DECODER, DECODER, backend=backend)
    cm = dd.cache_manager
    info = chan.recv()
    link_to(dd, PROMPT, info["port"])
    mine = kv_tensors(seed=0, blocks=D_BLOCKS, fill=False)
    desc = CacheDesc(NUM_TENSORS, [D_BLOCKS, BLOCK_ELEMS], DataType.DT_BF16, Placement.HOST)
    cache = cm.register_blocks_cache(desc, mine)
    src_all = kv_tensors(seed=1, blocks=P_BLOCKS)
    rng = random.Random(7)

    # 1. All layers, random block lists.
    src = rng.sample(range(P_BLOCKS), 6)
    dst = rng.sample(range(D_BLOCKS), 6)
    cm.pull_blocks(BlocksCacheKey(PROMPT, 0), cache, src, dst)
    for i in range(NUM_TENSORS):
        for s, d in zip(src, dst):
            assert torch.equal(raw(mine[i][d]), raw(src_all[i][s])), f"tensor {i} block {d} differs"
        rest = [b for b in range(D_BLOCKS) if b not in dst]
        assert int(raw(mine[i][rest]).count_nonzero()) == 0, "pull wrote outside its blocks"

    # 2. A layer range: source layers 1..2 into destination layers 2..3.
    for t in mine:
        t.zero_()
    src = rng.sample(range(P_BLOCKS), 5)
    dst = rng.sample(range(D_BLOCKS), 5)
    cm.pull_blocks(BlocksCacheKey(PROMPT, 0), cache, src, dst, src_layer_range=range(1, 3),
                   dst_layer_range=range(2, 4), tensor_num_per_layer=2)
    for layer in range(LAYERS):
        for kv in range(2):
            i = 2 * layer + kv
            if layer in (2, 3):
                for s, d in zip(src, dst):
                    assert torch.equal(raw(mine[i][d]), raw(src_all[2 * (layer - 1) + kv][s])), f"layer {layer}"
            else:
                assert int(raw(mine[i]).count_nonzero()) == 0, f"layer {layer} outside the range was written"

    # 3. Contiguous cache by request id and by id/index, into numpy arrays.
    import numpy as np
    arrays = [np.zeros((2, 512), dtype=np.float16) for _ in range(4)]
    ccache = cm.register_cache(CacheDesc(4, [2, 512], DataType.DT_FLOAT16, Placement.HOST), arrays)
    cm.pull_cache(CacheKey(PROMPT, req_id=11), ccache, batch_index=0)
    cm.pull_cache(CacheKeyByIdAndIndex(PROMPT, info["contig_id"], 0), ccache, batch_index=1)
    for i, a in enumerate(arrays):
        want = pattern(2, i, 2, 1024).numpy()
        assert a[0].view(np.uint8).tobytes() == want[1].tobytes(), "pull by CacheKey differs"
        assert a[1].view(np.uint8).tobytes() == want[0].tobytes(), "pull by CacheKeyByIdAndIndex differs"

    # 4. Errors, each with its status.
    expect_error(LLMStatusCode.LLM_NOT_YET_LINK, cm.pull_blocks, BlocksCacheKey(777, 0), cache, [0], [0])
    expect_error(LLMStatusCode.LLM_NOT_YET_LINK, cm.pull_blocks, CacheKeyByIdAndIndex(777, 1), cache, [0], [0])
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_blocks, BlocksCacheKey(PROMPT, 5), cache, [0], [0])
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_blocks, CacheKeyByIdAndIndex(PROMPT, 999), cache,
                 [0], [0])
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_cache, CacheKey(PROMPT, req_id=99), ccache)
    expect_error(LLMStatusCode.LLM_PARAM_INVALID, cm.pull_blocks, BlocksCacheKey(PROMPT, 0), cache, [P_BLOCKS], [0])
    expect_error(LLMStatusCode.LLM_PARAM_INVALID, cm.pull_blocks, BlocksCacheKey(PROMPT, 0), cache, [0], [D_BLOCKS])
    expect_error(LLMStatusCode.LLM_PARAM_INVALID, cm.pull_cache, CacheKeyByIdAndIndex(PROMPT, info["contig_id"], 2),
                 ccache)
    chan.sync("pulled")

    # 5. Push: our blocks into the prompt's, and one contiguous batch.
    mine_push = kv_tensors(seed=2, blocks=D_BLOCKS)
    for t, v in zip(mine, mine_push):
        t.copy_(v)
    src = rng.sample(range(D_BLOCKS), 4)
    dst = rng.sample(range(P_BLOCKS), 4)
    cm.push_blocks(BlocksCacheKey(PROMPT, 0), cache, src_blocks=src, dst_blocks=dst)
    for i, a in enumerate(arrays):
        a[0].view(np.uint8)[:] = pattern(3, i, 1, 1024).numpy()[0]
    cm.push_cache(CacheKeyByIdAndIndex(PROMPT, info["contig_id"], 1), ccache, src_batch_index=0)
    chan.send({"src": src, "dst": dst})
    chan.sync("verified")
    unlink_from(dd, PROMPT, info["port"])
    expect_error(LLMStatusCode.LLM_NOT_YET_LINK, cm.pull_blocks, BlocksCacheKey(PROMPT, 0), cache, [0], [0])
    chan.sync("unlinked")
    dd.finalize()


# --- a pull by CacheKey uses the key up (the vendor's reference counting) ----

KEYED_DESC = CacheDesc(2, [2, 256], DataType.DT_FLOAT16, Placement.HOST)


def keyed_prompt(chan):
    """Allocates a cache held by keys 21 and 22 and drops its id at once: the
    memory must live until both keys are gone, pulled or removed."""
    dd = init(PROMPT, PROMPT, listen="127.0.0.1:0", backend="tcp")
    cm = dd.cache_manager
    cache = cm.allocate_cache(KEYED_DESC, [CacheKey(PROMPT, req_id=21), CacheKey(PROMPT, req_id=22)])
    for i, t in enumerate(cache.tensors()):
        t.view(torch.uint8).copy_(pattern(8, i, 2, 512))
    cache_id = cache.cache_id
    cm.deallocate_cache(cache)  # the keys still hold it
    other = cm.allocate_cache(KEYED_DESC, [CacheKey(PROMPT, req_id=23)])
    other_id = other.cache_id
    cm.deallocate_cache(other)
    # Registered memory is the caller's: unregistering ends it at once, keys and all.
    arrays = [torch.zeros(2, 256, dtype=torch.float16) for _ in range(2)]
    registered = cm.register_cache(KEYED_DESC, arrays, [CacheKey(PROMPT, req_id=24)])
    cm.unregister_cache(registered.cache_id)
    chan.send({"port": dd.listen_port(), "cache_id": cache_id, "other_id": other_id})
    chan.sync("pulled 21")
    cm.allocate_cache(KEYED_DESC)  # any call takes in the release notes
    chan.sync("took in 21")
    chan.sync("pulled 22")
    cm.remove_cache_key(CacheKey(PROMPT, req_id=23))  # frees `other`; takes in 22's note, which frees `cache`
    chan.sync("took in 22")
    chan.sync("done")
    dd.finalize()


def keyed_decoder(chan):
    dd = init(DECODER, DECODER, backend="tcp")
    cm = dd.cache_manager
    info = chan.recv()
    link_to(dd, PROMPT, info["port"])
    mine = cm.allocate_cache(KEYED_DESC)

    def check(batch, src_row):
        for i, t in enumerate(mine.tensors()):
            assert torch.equal(t[batch].view(torch.uint8), pattern(8, i, 2, 512)[src_row]), f"tensor {i} differs"

    cm.pull_cache(CacheKey(PROMPT, req_id=21), mine, batch_index=0)  # after its owner dropped the id
    check(0, 0)
    chan.sync("pulled 21")
    chan.sync("took in 21")
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_cache, CacheKey(PROMPT, req_id=21), mine)
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_cache, CacheKey(PROMPT, req_id=24), mine)
    by_id = CacheKeyByIdAndIndex(PROMPT, info["cache_id"], 1)
    cm.pull_cache(by_id, mine, batch_index=1)  # key 22 still holds the memory
    check(1, 1)
    cm.pull_cache(CacheKey(PROMPT, req_id=22), mine, batch_index=0)
    check(0, 1)
    chan.sync("pulled 22")
    chan.sync("took in 22")
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_cache, CacheKey(PROMPT, req_id=22), mine)
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_cache, by_id, mine)
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_cache, CacheKey(PROMPT, req_id=23), mine)
    expect_error(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, cm.pull_cache,
                 CacheKeyByIdAndIndex(PROMPT, info["other_id"], 0), mine)
    chan.sync("done")
    dd.finalize()


# --- the vendor's Python samples (hicann/hixl examples/python/llm_datadist) --
# Written as in the samples, with CPU tensors instead of .npu() and a pipe
# instead of torch.distributed barriers; every result is checked.

def _rank_table(prompt_port, decoder_port):
    """The samples' rank table, both ranks on this host (so each has a
    device_port)."""
    return json.dumps({
        "server_count": "1", "status": "completed", "version": "1.2",
        "server_list": [{
            "device": [
                {"device_id": "0", "device_ip": "127.0.0.1", "device_port": str(prompt_port), "rank_id": "0"},
                {"device_id": "1", "device_ip": "127.0.0.1", "device_port": str(decoder_port), "rank_id": "1"},
            ],
            "host_ip": "127.0.0.1", "server_id": "1",
        }],
    })


def _sample_link(datadist, rank_table):
    cluster_rank_info = {1: 0, 2: 1}
    comm_id = datadist.link("link", cluster_rank_info, rank_table)
    deadline = time.monotonic() + 30
    while True:
        ret = datadist.query_register_mem_status(comm_id)
        if ret == RegisterMemStatus.OK:
            return comm_id
        if ret == RegisterMemStatus.FAILED:
            raise RuntimeError("link failed")
        assert time.monotonic() < deadline, "link did not complete in 30 s"
        time.sleep(0.05)


def _sample_init(role, cluster_id):
    datadist = LLMDataDist(role, cluster_id)
    llm_config = LLMConfig()
    llm_config.device_id = 0
    llm_config.enable_cache_manager = True
    datadist.init(llm_config.generate_options())
    return datadist


def sample_pull_blocks_prompt(chan, rank_table):
    datadist = _sample_init(LLMRole.PROMPT, 1)
    cache_manager = datadist.cache_manager
    cache_desc = CacheDesc(num_tensors=1, shape=[2, 1024 * 1024], data_type=DataType.DT_FLOAT,
                           placement=Placement.DEVICE)
    tensor = torch.arange(2 * 1024 * 1024, dtype=torch.float).reshape(2, 1024 * 1024)
    addr = int(tensor.data_ptr())
    _ = cache_manager.register_blocks_cache(cache_desc, [addr], BlocksCacheKey(1, 0))
    comm_id = _sample_link(datadist, rank_table)
    chan.sync("cache ready")
    chan.sync("decoder pull_blocks end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    datadist.finalize()


def sample_pull_blocks_decoder(chan, rank_table):
    datadist = _sample_init(LLMRole.DECODER, 2)
    cache_manager = datadist.cache_manager
    cache_desc = CacheDesc(num_tensors=1, shape=[2, 1024 * 1024], data_type=DataType.DT_FLOAT,
                           placement=Placement.DEVICE)
    tensor = torch.ones(2, 1024 * 1024, dtype=torch.float)
    addr = int(tensor.data_ptr())
    cache = cache_manager.register_blocks_cache(cache_desc, [addr])
    comm_id = _sample_link(datadist, rank_table)
    chan.sync("cache ready")
    cache_manager.pull_blocks(BlocksCacheKey(1, 0), cache, src_blocks=[0, 1], dst_blocks=[1, 0])
    want = torch.arange(2 * 1024 * 1024, dtype=torch.float).reshape(2, 1024 * 1024)
    assert torch.equal(tensor[1], want[0]) and torch.equal(tensor[0], want[1]), "pulled blocks differ"
    chan.sync("decoder pull_blocks end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    datadist.finalize()


CACHE_NUM_TENSORS = 4
CACHE_SHAPE = [2, 16 * 1024]


def sample_pull_cache_prompt(chan, rank_table):
    datadist = _sample_init(LLMRole.PROMPT, 1)
    comm_id = _sample_link(datadist, rank_table)
    cache_manager = datadist.cache_manager
    cache_desc = CacheDesc(num_tensors=CACHE_NUM_TENSORS, shape=CACHE_SHAPE, data_type=DataType.DT_FLOAT16,
                           placement=Placement.DEVICE)
    cache_key_0 = CacheKey(prompt_cluster_id=1, req_id=0, model_id=0)
    cache_key_1 = CacheKey(prompt_cluster_id=1, req_id=1, model_id=0)
    cache = cache_manager.allocate_cache(cache_desc, [cache_key_0, cache_key_1])
    for i, t in enumerate(cache.tensors()):  # zero-copy views of the allocated memory
        t.view(torch.uint8).copy_(pattern(5, i, 2, CACHE_SHAPE[1] * 2))
    chan.sync("cache ready")
    chan.sync("decoder pull_cache end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    cache_manager.remove_cache_key(cache_key_0)
    cache_manager.remove_cache_key(cache_key_1)
    cache_manager.deallocate_cache(cache)
    datadist.finalize()


def sample_pull_cache_decoder(chan, rank_table):
    datadist = _sample_init(LLMRole.DECODER, 2)
    comm_id = _sample_link(datadist, rank_table)
    cache_manager = datadist.cache_manager
    cache_desc = CacheDesc(num_tensors=CACHE_NUM_TENSORS, shape=CACHE_SHAPE, data_type=DataType.DT_FLOAT16,
                           placement=Placement.DEVICE)
    cache = cache_manager.allocate_cache(cache_desc)
    chan.sync("cache ready")
    cache_key_0 = CacheKey(prompt_cluster_id=1, req_id=0, model_id=0)
    cache_key_1 = CacheKey(prompt_cluster_id=1, req_id=1, model_id=0)
    cache_manager.pull_cache(cache_key_0, cache, batch_index=1)
    cache_manager.pull_cache(cache_key_1, cache, batch_index=0)
    for i, a in enumerate(cache.arrays()):
        want = pattern(5, i, 2, CACHE_SHAPE[1] * 2).numpy()
        assert a[1].tobytes() == want[0].tobytes() and a[0].tobytes() == want[1].tobytes(), f"tensor {i} differs"
    chan.sync("decoder pull_cache end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    cache_manager.deallocate_cache(cache)
    datadist.finalize()


NUM_TENSORS_S, BLOCKS_NUM, KV_SHAPE = 2, 3, 10
PROMPT_CLUSTER_ID, DECODER_CLUSTER_ID = 0, 1


def _push_sample_init(role, cluster_id, listen, transfer_backend):
    datadist = LLMDataDist(role, cluster_id)
    llm_config = LLMConfig()
    llm_config.device_id = 0
    llm_config.local_comm_res = ""
    if transfer_backend:
        llm_config.transfer_backend = transfer_backend
    if listen:
        llm_config.listen_ip_info = listen
    datadist.init(llm_config.generate_options())
    return datadist


def _sample_blocks_cache(cache_manager, cluster_id, fill):
    cache_desc = CacheDesc(num_tensors=NUM_TENSORS_S, shape=[BLOCKS_NUM, KV_SHAPE], data_type=DataType.DT_FLOAT,
                           placement=Placement.DEVICE)
    tensor = fill(0)
    tensor2 = fill(1)
    cache = cache_manager.register_blocks_cache(cache_desc, [int(tensor.data_ptr()), int(tensor2.data_ptr())],
                                                BlocksCacheKey(cluster_id, 0))
    return cache, tensor, tensor2


def _values(i):
    return (torch.arange(BLOCKS_NUM * KV_SHAPE, dtype=torch.float) + 1000 * (i + 1)).reshape(BLOCKS_NUM, KV_SHAPE)


def sample_push_blocks_prompt(chan, port, decoder_port, transfer_backend=""):
    datadist = _push_sample_init(LLMRole.PROMPT, PROMPT_CLUSTER_ID, f"127.0.0.1:{port}", transfer_backend)
    cache_manager = datadist.cache_manager
    cache, tensor, tensor2 = _sample_blocks_cache(cache_manager, PROMPT_CLUSTER_ID,
                                                  lambda i: torch.ones(BLOCKS_NUM, KV_SHAPE, dtype=torch.float))
    chan.sync("register end")
    chan.sync("decoder push blocks end")
    for t, i in ((tensor, 0), (tensor2, 1)):
        v = _values(i)
        assert torch.equal(t[0], v[0]) and torch.equal(t[2], v[1]), f"pushed blocks of tensor {i} differ"
        assert torch.equal(t[1], torch.ones(KV_SHAPE)), "push wrote block 1"
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = DECODER_CLUSTER_ID
    ret, _ = datadist.unlink_clusters([cluster], 5000, force=True)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("unlink failed")
    cache_manager.unregister_cache(cache.cache_id)
    datadist.finalize()


def sample_push_blocks_decoder(chan, port, decoder_port, transfer_backend=""):
    datadist = _push_sample_init(LLMRole.DECODER, DECODER_CLUSTER_ID, f"127.0.0.1:{decoder_port}",
                                 transfer_backend)
    cache_manager = datadist.cache_manager
    cache, tensor, tensor2 = _sample_blocks_cache(cache_manager, DECODER_CLUSTER_ID, _values)
    chan.sync("register end")
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = PROMPT_CLUSTER_ID
    cluster.append_local_ip_info("127.0.0.1", decoder_port)
    cluster.append_remote_ip_info("127.0.0.1", port)
    ret, _ = datadist.link_clusters([cluster], 5000)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("link failed")
    cache_manager.push_blocks(BlocksCacheKey(PROMPT_CLUSTER_ID, 0), cache, src_blocks=[0, 1], dst_blocks=[0, 2])
    chan.sync("decoder push blocks end")
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = PROMPT_CLUSTER_ID
    ret, _ = datadist.unlink_clusters([cluster], 5000, force=True)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("unlink failed")
    cache_manager.unregister_cache(cache.cache_id)
    datadist.finalize()


def _switch_init(role, cluster_id, port):
    datadist = LLMDataDist(role, cluster_id)
    llm_config = LLMConfig()
    llm_config.device_id = 0
    llm_config.local_comm_res = ""
    if role == LLMRole.PROMPT:
        llm_config.listen_ip_info = f"127.0.0.1:{port}"
    datadist.init(llm_config.generate_options())
    return datadist


def sample_switch_role_prompt(chan, port):
    datadist = _switch_init(LLMRole.PROMPT, PROMPT_CLUSTER_ID, port)
    cache_manager = datadist.cache_manager
    cache, tensor, tensor2 = _sample_blocks_cache(cache_manager, PROMPT_CLUSTER_ID, _values)
    chan.sync("register end")
    chan.sync("decoder unlink")
    datadist.switch_role(LLMRole.DECODER)
    assert datadist.listen_port() == 0, "still listening after switching to DECODER"
    chan.sync("prompt switch role end, close listen")
    chan.sync("decoder switch role end, listen")
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = DECODER_CLUSTER_ID
    cluster.append_local_ip_info("127.0.0.1", port)
    cluster.append_remote_ip_info("127.0.0.1", port)
    ret, _ = datadist.link_clusters([cluster], 5000)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("link failed")
    chan.sync("prompt link end")
    chan.sync("decoder push blocks end")
    # The decoder pushed all 3 blocks of both (one-tensor) layers back:
    # its blocks hold what it pulled, so ours are now [v0, v?, v1] per the pull.
    for t, i in ((tensor, 0), (tensor2, 1)):
        v = _values(i)
        assert torch.equal(t[0], v[0]) and torch.equal(t[2], v[1]), f"pushed-back tensor {i} differs"
        assert torch.equal(t[1], torch.full((KV_SHAPE,), 7.0)), f"pushed-back block 1 of tensor {i} differs"
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = DECODER_CLUSTER_ID
    ret, _ = datadist.unlink_clusters([cluster], 5000, force=True)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("unlink failed")
    cache_manager.unregister_cache(cache.cache_id)
    datadist.finalize()


def sample_switch_role_decoder(chan, port):
    datadist = _switch_init(LLMRole.DECODER, DECODER_CLUSTER_ID, port)
    cache_manager = datadist.cache_manager
    cache, tensor, tensor2 = _sample_blocks_cache(
        cache_manager, DECODER_CLUSTER_ID, lambda i: torch.full((BLOCKS_NUM, KV_SHAPE), 7.0, dtype=torch.float))
    chan.sync("register end")
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = PROMPT_CLUSTER_ID
    cluster.append_local_ip_info("127.0.0.1", port)
    cluster.append_remote_ip_info("127.0.0.1", port)
    ret, _ = datadist.link_clusters([cluster], 5000)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("link failed")
    cache_manager.pull_blocks(BlocksCacheKey(PROMPT_CLUSTER_ID, 0), cache, src_blocks=[0, 1], dst_blocks=[0, 2])
    for t, i in ((tensor, 0), (tensor2, 1)):
        v = _values(i)
        assert torch.equal(t[0], v[0]) and torch.equal(t[2], v[1]), f"pulled tensor {i} differs"
        assert torch.equal(t[1], torch.full((KV_SHAPE,), 7.0)), "pull wrote block 1"
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = PROMPT_CLUSTER_ID
    cluster.append_remote_ip_info("127.0.0.1", port)
    ret, _ = datadist.unlink_clusters([cluster], 5000)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("unlink failed")
    chan.sync("decoder unlink")
    chan.sync("prompt switch role end, close listen")
    llm_config = LLMConfig()
    llm_config.listen_ip_info = f"127.0.0.1:{port}"
    datadist.switch_role(LLMRole.PROMPT, llm_config.generate_options())
    assert datadist.listen_port() == port
    chan.sync("decoder switch role end, listen")
    chan.sync("prompt link end")
    cache_manager.push_blocks(BlocksCacheKey(PROMPT_CLUSTER_ID, 0), cache, src_blocks=[0, 1, 2],
                              dst_blocks=[0, 1, 2], src_layer_range=range(0, 2), dst_layer_range=range(0, 2),
                              tensor_num_per_layer=1)
    chan.sync("decoder push blocks end")
    cluster = LLMClusterInfo()
    cluster.remote_cluster_id = PROMPT_CLUSTER_ID
    ret, _ = datadist.unlink_clusters([cluster], 5000, force=True)
    if ret != LLMStatusCode.LLM_SUCCESS:
        raise Exception("unlink failed")
    cache_manager.unregister_cache(cache.cache_id)
    datadist.finalize()


# --- vllm-ascend's LLMDataDistCMgrConnector (llmdatadist_c_mgr_connector.py) -
# Its worker's calls, in its order: init with LLMConfig, two paged caches per
# process for MLA (k_normed as model 0, k_pe as model 1) registered from
# per-layer tensors, a metadata exchange, link() by rank table from both
# sides (prefill: the metadata listener thread after replying; decode: the
# transfer thread), query_register_mem_status polling, pull_blocks per
# request on a ThreadPoolExecutor(1), unlink, and no finalize.

VLLM_LAYERS, VLLM_BLOCKS, VLLM_BLOCK_SIZE = 3, 12, 16
KV_LORA, ROPE = 64, 16


def _vllm_kv_caches(seed, fill):
    caches = {}
    for layer in range(VLLM_LAYERS):
        if fill:
            k_normed = pattern(seed, 2 * layer, VLLM_BLOCKS, VLLM_BLOCK_SIZE * KV_LORA * 2).view(torch.bfloat16)
            k_pe = pattern(seed, 2 * layer + 1, VLLM_BLOCKS, VLLM_BLOCK_SIZE * ROPE * 2).view(torch.bfloat16)
        else:
            k_normed = torch.zeros(VLLM_BLOCKS, VLLM_BLOCK_SIZE * KV_LORA, dtype=torch.bfloat16)
            k_pe = torch.zeros(VLLM_BLOCKS, VLLM_BLOCK_SIZE * ROPE, dtype=torch.bfloat16)
        caches[f"model.layers.{layer}.self_attn"] = (
            k_normed.reshape(VLLM_BLOCKS, VLLM_BLOCK_SIZE, 1, KV_LORA).contiguous(),
            k_pe.reshape(VLLM_BLOCKS, VLLM_BLOCK_SIZE, 1, ROPE).contiguous())
    return caches


class _VllmWorker:
    """The connector worker's llm_datadist calls, transcribed."""

    def __init__(self, role, cluster_id, device_ip):
        self.llm_datadist_role = role
        self.cluster_id = cluster_id
        self.device_ip = device_ip
        self.linked_cluster = {}
        self.llm_datadist = LLMDataDist(role, cluster_id)
        llm_config = LLMConfig()
        llm_config.device_id = 0
        llm_config.sync_kv_timeout = 20000
        llm_config.enable_switch_role = True
        llm_config.enable_cache_manager = True
        llm_config.enable_remote_cache_accessible = True
        self.llm_datadist.init(llm_config.generate_options())
        self.cache_manager = self.llm_datadist.cache_manager

    def register_kv_caches(self, kv_caches):
        k_normed = k_pe = None
        normed_addrs, pe_addrs = [], []
        for k_normed, k_pe in kv_caches.values():
            normed_addrs.append(k_normed.data_ptr())
            pe_addrs.append(k_pe.data_ptr())
        desc_normed = CacheDesc(len(normed_addrs), [*k_normed.shape], DataType.DT_BF16)
        desc_pe = CacheDesc(len(pe_addrs), [*k_pe.shape], DataType.DT_BF16)
        key_normed = BlocksCacheKey(cluster_id=int(self.cluster_id), model_id=0)
        key_pe = BlocksCacheKey(cluster_id=int(self.cluster_id), model_id=1)
        self.cache = (self.cache_manager.register_blocks_cache(desc_normed, normed_addrs, key_normed),
                      self.cache_manager.register_blocks_cache(desc_pe, pe_addrs, key_pe))

    def add_remote_agent(self, remote):
        remote_cluster_id = remote["cluster_id"]
        if remote_cluster_id in self.linked_cluster:
            return remote_cluster_id
        mine = {"cluster_id": self.cluster_id, "device_id": "0", "device_ip": self.device_ip}
        if self.llm_datadist_role == LLMRole.PROMPT:
            prefill, decode = mine, remote
        else:
            prefill, decode = remote, mine
        comm_name = f"pd_comm_{prefill['device_ip']}_{decode['device_ip']}"
        cluster_rank_info = {prefill["cluster_id"]: 0, decode["cluster_id"]: 1}
        rank_table = {"version": "1.2", "server_count": "1", "status": "completed", "server_list": [{
            "device": [
                {"device_id": prefill["device_id"], "device_ip": prefill["device_ip"], "rank_id": "0"},
                {"device_id": decode["device_id"], "device_ip": decode["device_ip"], "rank_id": "1"},
            ],
            "server_id": "127.0.0.1",
        }]}
        comm_id = self.llm_datadist.link(comm_name, cluster_rank_info, json.dumps(rank_table))
        deadline = time.monotonic() + 30
        while True:
            ret = self.llm_datadist.query_register_mem_status(comm_id=comm_id)
            if ret == RegisterMemStatus.OK:
                break
            elif ret == RegisterMemStatus.FAILED:
                raise RuntimeError(f"Linking failed, comm id: {comm_id}")
            assert time.monotonic() < deadline, "link did not complete in 30 s"
            time.sleep(0.1)  # the connector sleeps 1 s
        self.linked_cluster.update({remote_cluster_id: comm_id})
        return remote_cluster_id

    def remove_remote_agent(self, cluster_id):
        comm_id = self.linked_cluster[cluster_id]
        self.llm_datadist.unlink(comm_id)
        self.linked_cluster.pop(cluster_id)


def vllm_prefill(chan):
    worker = _VllmWorker(LLMRole.PROMPT, 100, "127.0.0.1")
    kv_caches = _vllm_kv_caches(seed=11, fill=True)
    worker.register_kv_caches(kv_caches)
    errors = []

    def listen_for_agent_metadata_req():
        try:
            msg = chan.recv()
            assert msg[0] == "ReqForMetadata"
            chan.send({"cluster_id": worker.cluster_id, "device_id": "0", "device_ip": worker.device_ip})
            worker.add_remote_agent(msg[1])
        except BaseException as e:  # noqa: B902
            errors.append(e)
            raise

    t = threading.Thread(target=listen_for_agent_metadata_req, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive() and not errors, f"metadata listener failed: {errors}"
    chan.sync("requests done")  # the decoder pulled every request
    chan.sync("unlinked")
    # No finalize: the module's atexit handler does it.


def vllm_decode(chan):
    from concurrent.futures import ThreadPoolExecutor
    worker = _VllmWorker(LLMRole.DECODER, 200, "127.0.0.1")
    kv_caches = _vllm_kv_caches(seed=0, fill=False)
    worker.register_kv_caches(kv_caches)
    executor = ThreadPoolExecutor(1)
    remote = {}

    def connect_to_remote_agent():
        if "meta" not in remote:
            chan.send(("ReqForMetadata", {"cluster_id": worker.cluster_id, "device_id": "0",
                                          "device_ip": worker.device_ip}))
            remote["meta"] = chan.recv()
        return worker.add_remote_agent(remote["meta"])

    def _read_blocks(local_block_ids, remote_block_ids, request_id):
        remote_cluster_id = connect_to_remote_agent()
        worker.cache_manager.pull_blocks(BlocksCacheKey(cluster_id=remote_cluster_id, model_id=0), worker.cache[0],
                                         remote_block_ids, local_block_ids)
        worker.cache_manager.pull_blocks(BlocksCacheKey(cluster_id=remote_cluster_id, model_id=1), worker.cache[1],
                                         remote_block_ids, local_block_ids)
        return request_id, threading.get_ident()

    rng = random.Random(3)
    free = list(range(VLLM_BLOCKS))
    rng.shuffle(free)
    requests = []
    for req in range(3):
        n = 3 + req % 2
        local = [free.pop() for _ in range(n)]
        remote_ids = rng.sample(range(VLLM_BLOCKS), n)
        requests.append((f"req-{req}", local, remote_ids))
    futures = [executor.submit(_read_blocks, local_block_ids=local, remote_block_ids=rids, request_id=rid)
               for rid, local, rids in requests]
    threads = {f.result(timeout=60)[1] for f in futures}
    assert threading.get_ident() not in threads, "pulls ran on the main thread"
    want = _vllm_kv_caches(seed=11, fill=True)
    for name, (k_normed, k_pe) in kv_caches.items():
        w_normed, w_pe = want[name]
        pulled = set()
        for rid, local, rids in requests:
            for l, r in zip(local, rids):
                assert torch.equal(raw(k_normed[l]), raw(w_normed[r])), f"{name} k_normed block {l} ({rid})"
                assert torch.equal(raw(k_pe[l]), raw(w_pe[r])), f"{name} k_pe block {l} ({rid})"
                pulled.add(l)
        rest = [b for b in range(VLLM_BLOCKS) if b not in pulled]
        assert int(raw(k_normed[rest]).count_nonzero()) == 0 and int(raw(k_pe[rest]).count_nonzero()) == 0
    chan.sync("requests done")
    worker.remove_remote_agent(100)
    executor.shutdown(wait=True)
    chan.sync("unlinked")
    # No finalize: the module's atexit handler does it.


# --- the GIL is released during transfers ------------------------------------
# The prefill process is stopped (SIGSTOP), so a pull over TCP cannot finish:
# its request waits, unread, in the prefill's socket receive queue, which the
# kernel shows in /proc/net/tcp. Thread A pulls; the main thread (which needs
# the GIL to run at all) sees A's request queued at the stopped peer, so A is
# inside its call. Then thread B pulls, and the main thread sees B's request
# queued too while A's is still unanswered: both threads are inside a
# transfer at once. Only then is the peer continued; both pulls must
# succeed, byte-verified. A call holding the GIL would leave the main thread
# unable to observe or continue the peer, and A would fail with LLM_TIMEOUT.

def gil_prefill(chan):
    dd = init(PROMPT, PROMPT, listen="127.0.0.1:0", backend="tcp")
    tensors = kv_tensors(seed=1, blocks=P_BLOCKS)
    desc = CacheDesc(NUM_TENSORS, [P_BLOCKS, BLOCK_ELEMS], DataType.DT_BF16, Placement.HOST)
    dd.cache_manager.register_blocks_cache(desc, tensors, BlocksCacheKey(PROMPT, 0))
    chan.send({"port": dd.listen_port(), "pid": os.getpid()})
    chan.sync("done", timeout=120)
    dd.finalize()


def gil_decode(chan):
    import signal
    dd = init(DECODER, DECODER, backend="tcp", timeout_ms=60000)
    cm = dd.cache_manager
    info = chan.recv()
    link_to(dd, PROMPT, info["port"])
    mine = kv_tensors(seed=0, blocks=D_BLOCKS, fill=False)
    desc = CacheDesc(NUM_TENSORS, [D_BLOCKS, BLOCK_ELEMS], DataType.DT_BF16, Placement.HOST)
    cache = cm.register_blocks_cache(desc, mine)
    key = BlocksCacheKey(PROMPT, 0)
    cm.pull_blocks(key, cache, [0], [0])  # resolves the key while the peer runs
    for t in mine:
        t.zero_()
    pid = info["pid"]
    results = {}

    def pull(name, src, dst):
        try:
            cm.pull_blocks(key, cache, src, dst)
            results[name] = "ok"
        except BaseException as e:  # noqa: B902
            results[name] = repr(e)

    a = threading.Thread(target=pull, args=("A", [3], [1]))
    b = threading.Thread(target=pull, args=("B", [5], [2]))
    assert not queued_bytes(pid), "the peer has unread bytes before any pull"
    freeze(pid)
    try:
        a.start()
        wait_for(lambda: queued_bytes(pid), "thread A's request at the stopped peer")
        before = queued_bytes(pid)
        assert a.is_alive() and not results, "A finished against a stopped peer"
        b.start()
        wait_for(lambda: sum(queued_bytes(pid).values()) > sum(before.values()),
                  "thread B's request at the stopped peer")
        # Both requests are unanswered: A and B are inside their calls now.
        assert a.is_alive() and b.is_alive() and not results, f"a pull finished against a stopped peer: {results}"
    finally:
        os.kill(pid, signal.SIGCONT)
    a.join(60)
    b.join(60)
    assert results == {"A": "ok", "B": "ok"}, results
    src_all = kv_tensors(seed=1, blocks=P_BLOCKS)
    for i in range(NUM_TENSORS):
        assert torch.equal(raw(mine[i][1]), raw(src_all[i][3])) and torch.equal(raw(mine[i][2]), raw(src_all[i][5]))
        assert int(raw(mine[i][[0] + list(range(3, D_BLOCKS))]).count_nonzero()) == 0
    chan.sync("done")
    dd.finalize()


# --- discovery through etcd (llm.Directory): a rank table without addresses -

def _directory_rank_table():
    """Ranks with no device_ip: each is found by its cluster id in etcd."""
    return json.dumps({"server_count": "1", "status": "completed", "version": "1.2", "server_list": [{
        "device": [{"device_id": "0", "rank_id": "0"}, {"device_id": "1", "rank_id": "1"}], "server_id": "1"}]})


def _directory_init(role, cluster_id, directory, prefix):
    datadist = LLMDataDist(role, cluster_id)
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.enable_cache_manager = True
    cfg.directory = directory
    cfg.directory_prefix = prefix
    cfg.directory_ttl = 2
    datadist.init(cfg.generate_options())
    return datadist


def directory_prompt(chan, directory, prefix):
    datadist = _directory_init(LLMRole.PROMPT, 1, directory, prefix)
    cache_desc = CacheDesc(num_tensors=1, shape=[2, 4096], data_type=DataType.DT_FLOAT, placement=Placement.HOST)
    tensor = torch.arange(2 * 4096, dtype=torch.float).reshape(2, 4096)
    datadist.cache_manager.register_blocks_cache(cache_desc, [int(tensor.data_ptr())], BlocksCacheKey(1, 0))
    comm_id = _sample_link(datadist, _directory_rank_table())
    chan.sync("cache ready")
    chan.sync("decoder done")
    datadist.unlink(comm_id)
    datadist.finalize()


def directory_decoder(chan, directory, prefix):
    datadist = _directory_init(LLMRole.DECODER, 2, directory, prefix)
    cache_desc = CacheDesc(num_tensors=1, shape=[2, 4096], data_type=DataType.DT_FLOAT, placement=Placement.HOST)
    tensor = torch.zeros(2, 4096, dtype=torch.float)
    cache = datadist.cache_manager.register_blocks_cache(cache_desc, [int(tensor.data_ptr())])
    comm_id = _sample_link(datadist, _directory_rank_table())
    chan.sync("cache ready")
    datadist.cache_manager.pull_blocks(BlocksCacheKey(1, 0), cache, src_blocks=[0, 1], dst_blocks=[1, 0])
    want = torch.arange(2 * 4096, dtype=torch.float).reshape(2, 4096)
    assert torch.equal(tensor[1], want[0]) and torch.equal(tensor[0], want[1]), "pulled blocks differ"
    # A cluster id nobody published: LLM_LINK_FAILED at once.
    unknown = LLMClusterInfo()
    unknown.remote_cluster_id = 999
    ret, rets = datadist.link_clusters([unknown], 2000)
    assert rets == [LLMStatusCode.LLM_LINK_FAILED], (ret, rets)
    chan.sync("decoder done")
    datadist.unlink(comm_id)
    datadist.finalize()
