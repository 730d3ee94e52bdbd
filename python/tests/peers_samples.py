"""Roles following the vendor's current Python samples (hicann/hixl
examples/python/llm_datadist) that our module failed before: pull_blocks
(swap_blocks, Cache.create_cpu_cache), pull_from_cache_to_blocks, push_cache
(cache id 1), transfer_cache_async and hixl_transfer_backend (mutual link).
Only the Ascend calls are replaced (.npu() stays on the CPU); every byte that
moves is checked."""
import time

import torch

from llm_datadist import (BlocksCacheKey, Cache, CacheDesc, CacheKey, CacheKeyByIdAndIndex, DataType,
                          LayerSynchronizer, LLMClusterInfo, LLMConfig, LLMDataDist, LLMRole, LLMStatusCode,
                          Placement, TransferWithCacheKeyConfig)
from peers import _sample_init, _sample_link, pattern

PROMPT_CLUSTER_ID, DECODER_CLUSTER_ID = 0, 1
NUM_TENSORS, BLOCKS_NUM, KV_SHAPE = 2, 3, 10


def _server(role, cluster_id, port, transfer_backend="", remote_cache=False):
    datadist = LLMDataDist(role, cluster_id)
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.local_comm_res = ""
    if transfer_backend:
        cfg.transfer_backend = transfer_backend
    cfg.listen_ip_info = f"127.0.0.1:{port}"
    if remote_cache:
        cfg.enable_cache_manager = True
        cfg.enable_remote_cache_accessible = True
    datadist.init(cfg.generate_options())
    return datadist


def _cluster(remote_id, local_port, remote_port):
    c = LLMClusterInfo()
    c.remote_cluster_id = remote_id
    if local_port:
        c.append_local_ip_info("127.0.0.1", local_port)
    if remote_port:
        c.append_remote_ip_info("127.0.0.1", remote_port)
    return c


def _desc(shape=(BLOCKS_NUM, KV_SHAPE), num_tensors=NUM_TENSORS, dtype=DataType.DT_FLOAT):
    return CacheDesc(num_tensors=num_tensors, shape=list(shape), data_type=dtype, placement=Placement.DEVICE)


def _values(i, shape=(BLOCKS_NUM, KV_SHAPE)):
    n = shape[0] * shape[1]
    return (torch.arange(n, dtype=torch.float) + 1000 * (i + 1)).reshape(*shape)


# --- pull_blocks_sample.py: pull, then swap out to a CPU cache and back ---

SWAP_SHAPE = (2, 1024 * 1024)


def pull_blocks_swap_prompt(chan, rank_table):
    datadist = _sample_init(LLMRole.PROMPT, 1)
    cm = datadist.cache_manager
    tensor = _values(0, SWAP_SHAPE)
    cm.register_blocks_cache(_desc(SWAP_SHAPE, 1), [int(tensor.data_ptr())], BlocksCacheKey(1, 0))
    comm_id = _sample_link(datadist, rank_table)
    chan.sync("cache ready")
    chan.sync("decoder pull_blocks end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    datadist.finalize()


def pull_blocks_swap_decoder(chan, rank_table):
    datadist = _sample_init(LLMRole.DECODER, 2)
    cm = datadist.cache_manager
    tensor = torch.ones(*SWAP_SHAPE, dtype=torch.float)
    cache = cm.register_blocks_cache(_desc(SWAP_SHAPE, 1), [int(tensor.data_ptr())])
    comm_id = _sample_link(datadist, rank_table)
    chan.sync("cache ready")
    cm.pull_blocks(BlocksCacheKey(1, 0), cache, src_blocks=[0, 1], dst_blocks=[0, 1])
    want = _values(0, SWAP_SHAPE)
    assert torch.equal(tensor, want), "pulled blocks differ"
    # The sample's _allocate_cpu_cache: torch.rand CPU tensors as a CPU cache.
    cpu_tensor = torch.rand(size=SWAP_SHAPE, dtype=torch.float32, device="cpu")
    cpu_desc = CacheDesc(num_tensors=1, shape=list(SWAP_SHAPE), data_type=DataType.DT_FLOAT,
                         placement=Placement.HOST)
    cpu_cache = Cache.create_cpu_cache(cpu_desc, [cpu_tensor.data_ptr()])
    assert cpu_cache.cache_id == -1 and cpu_cache.is_blocks_cache
    cm.swap_blocks(cache, cpu_cache, {0: 0, 1: 1})
    assert torch.equal(cpu_tensor, want), "swap out differs"
    cm.swap_blocks(cpu_cache, cache, {0: 1, 1: 0})  # swapped back crosswise, so a no-op cannot pass
    assert torch.equal(tensor[0], want[1]) and torch.equal(tensor[1], want[0]), "swap in differs"
    for bad in ({0: 2}, {}):
        try:
            cm.swap_blocks(cpu_cache, cache, bad)
            raise AssertionError(f"swap_blocks accepted {bad}")
        except Exception as e:  # noqa: B902 - LLMException expected
            assert getattr(e, "status_code", None) == LLMStatusCode.LLM_PARAM_INVALID, e
    chan.sync("decoder pull_blocks end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    datadist.finalize()


# --- pull_from_cache_to_blocks.py: a contiguous cache by CacheKey into blocks ---

ROW_SHAPE = (2, 16 * 1024)


def cache_to_blocks_prompt(chan, rank_table):
    datadist = _sample_init(LLMRole.PROMPT, 1)
    comm_id = _sample_link(datadist, rank_table)
    cm = datadist.cache_manager
    cache_key = CacheKey(prompt_cluster_id=1, req_id=0, model_id=0)
    cache = cm.allocate_cache(_desc(ROW_SHAPE, 4, DataType.DT_FLOAT16), [cache_key])
    for i, t in enumerate(cache.tensors()):
        t.view(torch.uint8).copy_(pattern(11, i, 2, ROW_SHAPE[1] * 2))
    chan.sync("cache ready")
    chan.sync("decoder pull_blocks end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    cm.remove_cache_key(cache_key)
    cm.deallocate_cache(cache)
    datadist.finalize()


def cache_to_blocks_decoder(chan, rank_table):
    datadist = _sample_init(LLMRole.DECODER, 2)
    cm = datadist.cache_manager
    tensors = [torch.ones(*ROW_SHAPE, dtype=torch.float16) for _ in range(4)]
    cache = cm.register_blocks_cache(_desc(ROW_SHAPE, 4, DataType.DT_FLOAT16), [t.data_ptr() for t in tensors])
    comm_id = _sample_link(datadist, rank_table)
    chan.sync("cache ready")
    cm.pull_blocks(CacheKey(prompt_cluster_id=1, req_id=0, model_id=0), cache, src_blocks=[], dst_blocks=[1])
    for i, t in enumerate(tensors):
        raw = t.view(torch.uint8)
        assert torch.equal(raw[1], pattern(11, i, 2, ROW_SHAPE[1] * 2)[0]), f"tensor {i}: block 1 differs"
        assert torch.equal(t[0], torch.ones(ROW_SHAPE[1], dtype=torch.float16)), f"tensor {i}: block 0 written"
    chan.sync("decoder pull_blocks end")
    datadist.unlink(comm_id)
    chan.sync("wait peer unlink end")
    datadist.finalize()


# --- push_cache_sample.py: the decoder pushes into the prompt's cache id 1 ---

def push_cache_prompt(chan, port, decoder_port):
    datadist = _server(LLMRole.PROMPT, PROMPT_CLUSTER_ID, port)
    cm = datadist.cache_manager
    tensor = torch.zeros(BLOCKS_NUM, KV_SHAPE)
    tensor2 = torch.zeros(BLOCKS_NUM, KV_SHAPE)
    cache = cm.register_cache(_desc(), [int(tensor.data_ptr()), int(tensor2.data_ptr())])
    assert cache.cache_id == 1, f"the first user cache has id {cache.cache_id}, the vendor's has 1"
    chan.sync("register end")
    chan.sync("decoder push cache end")
    assert torch.equal(tensor[0], _values(0)[0]) and torch.equal(tensor2[0], _values(1)[0]), "pushed batch differs"
    assert not tensor[1:].any() and not tensor2[1:].any(), "push wrote beyond batch 0"
    chan.sync("wait unlink end")
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()


def push_cache_decoder(chan, port, decoder_port):
    datadist = _server(LLMRole.DECODER, DECODER_CLUSTER_ID, decoder_port)
    cm = datadist.cache_manager
    tensor, tensor2 = _values(0), _values(1)
    cache = cm.register_cache(_desc(), [int(tensor.data_ptr()), int(tensor2.data_ptr())])
    chan.sync("register end")
    ret, _ = datadist.link_clusters([_cluster(PROMPT_CLUSTER_ID, decoder_port, port)], 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    cm.push_cache(CacheKeyByIdAndIndex(cluster_id=PROMPT_CLUSTER_ID, cache_id=1, batch_index=0), cache,
                  src_batch_index=0)
    # No id a user can name reaches the module's own caches: the next user
    # ids do not exist on the peer.
    for cache_id in (2, 3, 4):
        try:
            cm.push_cache(CacheKeyByIdAndIndex(PROMPT_CLUSTER_ID, cache_id, 0), cache)
            raise AssertionError(f"cache id {cache_id} exists on the peer")
        except Exception as e:  # noqa: B902 - LLMException expected
            assert getattr(e, "status_code", None) == LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, e
    chan.sync("decoder push cache end")
    ret, _ = datadist.unlink_clusters([_cluster(PROMPT_CLUSTER_ID, 0, port)], 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    chan.sync("wait unlink end")
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()


# --- transfer_cache_async_sample.py: layer-wise async push by BlocksCacheKey ---

class _Releases(LayerSynchronizer):
    def __init__(self, ret=True):
        self._ret = ret
        self.asked = []

    def synchronize_layer(self, layer_index, timeout_in_millis):
        self.asked.append(layer_index)
        return self._ret


def async_prompt(chan, port, decoder_port):
    datadist = _server(LLMRole.PROMPT, PROMPT_CLUSTER_ID, port, remote_cache=True)
    cm = datadist.cache_manager
    tensor, tensor2 = _values(0), _values(1)
    cache = cm.register_blocks_cache(_desc(), [int(tensor.data_ptr()), int(tensor2.data_ptr())],
                                     BlocksCacheKey(PROMPT_CLUSTER_ID, 0))
    chan.sync("register end")
    ret, _ = datadist.link_clusters([_cluster(DECODER_CLUSTER_ID, port, decoder_port)], 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    # A synchronizer that refuses the layer stops the transfer: nothing moves.
    refuse = _Releases(False)
    task = cm.transfer_cache_async(cache, refuse, [TransferWithCacheKeyConfig(
        BlocksCacheKey(DECODER_CLUSTER_ID, 0), range(0, 1), range(0, 1))])
    assert task.get_results() == [LLMStatusCode.LLM_PARAM_INVALID] and refuse.asked == [0]
    chan.sync("refused")
    chan.sync("checked")
    sync = _Releases(True)
    task = cm.transfer_cache_async(cache, sync, [TransferWithCacheKeyConfig(
        BlocksCacheKey(DECODER_CLUSTER_ID, 0), range(0, 1), range(0, 1))])
    assert task.get_results() == [LLMStatusCode.LLM_SUCCESS] and sync.asked == [0]
    assert task.synchronize() == LLMStatusCode.LLM_SUCCESS
    chan.sync("transfer cache end")
    ret, _ = datadist.unlink_clusters([_cluster(DECODER_CLUSTER_ID, 0, 0)], 5000, force=True)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    chan.sync("unlinked")
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()


def async_decoder(chan, port, decoder_port):
    datadist = _server(LLMRole.DECODER, DECODER_CLUSTER_ID, decoder_port, remote_cache=True)
    cm = datadist.cache_manager
    tensor = torch.zeros(BLOCKS_NUM, KV_SHAPE)
    tensor2 = torch.zeros(BLOCKS_NUM, KV_SHAPE)
    cache = cm.register_blocks_cache(_desc(), [int(tensor.data_ptr()), int(tensor2.data_ptr())],
                                     BlocksCacheKey(DECODER_CLUSTER_ID, 0))
    chan.sync("register end")
    chan.sync("refused")
    assert not tensor.any() and not tensor2.any(), "a refused layer was sent"
    chan.sync("checked")
    chan.sync("transfer cache end")
    assert torch.equal(tensor, _values(0)) and torch.equal(tensor2, _values(1)), "layer 0 differs"
    chan.sync("unlinked")
    ret, _ = datadist.unlink_clusters([_cluster(PROMPT_CLUSTER_ID, 0, 0)], 5000, force=True)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()


# --- hixl_transfer_backend_sample.py: both link to each other at once ---

def mutual_prompt(chan, port, decoder_port, rounds=1, transfer_backend="hixl"):
    datadist = _server(LLMRole.PROMPT, PROMPT_CLUSTER_ID, port, transfer_backend)
    cm = datadist.cache_manager
    tensor, tensor2 = torch.ones(BLOCKS_NUM, KV_SHAPE), torch.ones(BLOCKS_NUM, KV_SHAPE)
    cache = cm.register_blocks_cache(_desc(), [int(tensor.data_ptr()), int(tensor2.data_ptr())],
                                     BlocksCacheKey(PROMPT_CLUSTER_ID, 0))
    for r in range(rounds):
        chan.sync(f"register end {r}")
        ret, rets = datadist.link_clusters([_cluster(DECODER_CLUSTER_ID, port, decoder_port)], 5000)
        assert ret == LLMStatusCode.LLM_SUCCESS, (r, ret, rets)
        cm.pull_blocks(BlocksCacheKey(DECODER_CLUSTER_ID, 0), cache, src_blocks=[2], dst_blocks=[2])
        chan.sync(f"transfers end {r}")
        ret, _ = datadist.unlink_clusters([_cluster(DECODER_CLUSTER_ID, 0, 0)], 5000)
        assert ret == LLMStatusCode.LLM_SUCCESS, (r, ret)
        chan.sync(f"unlink end {r}")
        want = torch.zeros(BLOCKS_NUM, KV_SHAPE) + r + 1
        assert torch.equal(tensor, want) and torch.equal(tensor2, want), (r, tensor)
        tensor.fill_(-1)
        tensor2.fill_(-1)
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()


def mutual_decoder(chan, port, decoder_port, rounds=1, transfer_backend="hixl"):
    datadist = _server(LLMRole.DECODER, DECODER_CLUSTER_ID, decoder_port, transfer_backend)
    cm = datadist.cache_manager
    tensor, tensor2 = torch.zeros(BLOCKS_NUM, KV_SHAPE), torch.zeros(BLOCKS_NUM, KV_SHAPE)
    cache = cm.register_blocks_cache(_desc(), [int(tensor.data_ptr()), int(tensor2.data_ptr())],
                                     BlocksCacheKey(DECODER_CLUSTER_ID, 0))
    for r in range(rounds):
        tensor.fill_(r + 1)
        tensor2.fill_(r + 1)
        chan.sync(f"register end {r}")
        ret, rets = datadist.link_clusters([_cluster(PROMPT_CLUSTER_ID, decoder_port, port)], 5000)
        assert ret == LLMStatusCode.LLM_SUCCESS, (r, ret, rets)
        cm.push_blocks(BlocksCacheKey(PROMPT_CLUSTER_ID, 0), cache, src_blocks=[0, 1], dst_blocks=[0, 1])
        chan.sync(f"transfers end {r}")
        ret, _ = datadist.unlink_clusters([_cluster(PROMPT_CLUSTER_ID, 0, 0)], 5000)
        assert ret == LLMStatusCode.LLM_SUCCESS, (r, ret)
        chan.sync(f"unlink end {r}")
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()
