"""Roles for the layer-wise asynchronous push (transfer_cache_async with a
LayerSynchronizer) against a fake model: it "computes" each layer (a short
sleep) and, before releasing layer i, asks the receiving process what has
landed. Every layer before i must be there, byte for byte, and no later
layer may have arrived: the transfer overlaps the model layer by layer and
never runs ahead of it. A synchronizer that returns False, or gives up
waiting (its own timeout), stops the transfer with the vendor's status, and
nothing after the stopped layer lands."""
import threading
import time

import torch

from llm_datadist import BlocksCacheKey, LayerSynchronizer, LLMRole, LLMStatusCode, TransferWithCacheKeyConfig
from peers_samples import BLOCKS_NUM, KV_SHAPE, _cluster, _desc, _server

PROMPT, DECODER = 0, 1
LAYERS = 8


def _expected(tensor_index):
    return (torch.arange(BLOCKS_NUM * KV_SHAPE, dtype=torch.float) + 1000 * (tensor_index + 1)).reshape(
        BLOCKS_NUM, KV_SHAPE)


class _Model(LayerSynchronizer):
    """Releases layer after layer; `stop_at` returns False there; `hang_at`
    waits for a release that never comes and gives up after its timeout."""

    def __init__(self, chan, layer_ms=2, stop_at=None, hang_at=None, give_up_ms=100):
        self._chan, self._layer_s = chan, layer_ms / 1000
        self._stop_at, self._hang_at, self._give_up_s = stop_at, hang_at, give_up_ms / 1000
        self.released, self.problems = [], []

    def synchronize_layer(self, layer_index, timeout_in_millis):
        time.sleep(self._layer_s)  # the layer's compute
        self._chan.send(("check", layer_index))
        got = self._chan.recv(30)
        if got != ("ok", layer_index):
            self.problems.append(got)
        if layer_index == self._stop_at:
            return False
        if layer_index == self._hang_at:
            return threading.Event().wait(self._give_up_s)  # never set: times out, False
        self.released.append(layer_index)
        return True


def _config():
    return [TransferWithCacheKeyConfig(BlocksCacheKey(DECODER, 0), range(0, LAYERS), range(0, LAYERS))]


def prompt(chan, port, decoder_port):
    datadist = _server(LLMRole.PROMPT, PROMPT, port, remote_cache=True)
    cm = datadist.cache_manager
    tensors = [_expected(j) for j in range(2 * LAYERS)]
    cache = cm.register_blocks_cache(_desc(num_tensors=2 * LAYERS), [int(t.data_ptr()) for t in tensors],
                                     BlocksCacheKey(PROMPT, 0))
    chan.sync("register end")
    ret, _ = datadist.link_clusters([_cluster(DECODER, port, decoder_port)], 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret

    def landed(n):
        chan.send(("check", n))
        got = chan.recv(30)
        assert got == ("ok", n), got

    def reset():
        chan.send(("reset",))
        assert chan.recv(30) == ("ok", "reset")

    # Every layer, each released only after the previous one arrived.
    model = _Model(chan)
    task = cm.transfer_cache_async(cache, model, _config())
    assert task.get_results(30000) == [LLMStatusCode.LLM_SUCCESS]
    assert model.problems == [] and model.released == list(range(LAYERS))
    landed(LAYERS)

    # The model refuses layer 5: the vendor's LLM_PARAM_INVALID, layers 0-4 only.
    reset()
    model = _Model(chan, stop_at=5)
    assert cm.transfer_cache_async(cache, model, _config()).get_results(30000) == [LLMStatusCode.LLM_PARAM_INVALID]
    assert model.problems == []
    landed(5)

    # The model's wait for layer 3 times out: the same, and while it waits
    # the task answers LLM_TIMEOUT to a caller that asks with a short timeout.
    reset()
    model = _Model(chan, hang_at=3, give_up_ms=500)
    task = cm.transfer_cache_async(cache, model, _config())
    time.sleep(0.2)
    assert task.get_results(10) == [LLMStatusCode.LLM_TIMEOUT]
    assert task.synchronize(10) == LLMStatusCode.LLM_TIMEOUT
    assert task.get_results(30000) == [LLMStatusCode.LLM_PARAM_INVALID]
    assert model.problems == []
    landed(3)

    # Nothing was left behind: a full transfer after both stops works.
    reset()
    assert cm.transfer_cache_async(cache, _Model(chan, layer_ms=0), _config()).get_results(30000) == \
        [LLMStatusCode.LLM_SUCCESS]
    landed(LAYERS)
    chan.send(("done",))
    ret, _ = datadist.unlink_clusters([_cluster(DECODER, 0, 0)], 5000, force=True)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    chan.sync("unlinked")
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()


def decoder(chan, port, decoder_port):
    datadist = _server(LLMRole.DECODER, DECODER, decoder_port, remote_cache=True)
    cm = datadist.cache_manager
    tensors = [torch.zeros(BLOCKS_NUM, KV_SHAPE) for _ in range(2 * LAYERS)]
    cache = cm.register_blocks_cache(_desc(num_tensors=2 * LAYERS), [int(t.data_ptr()) for t in tensors],
                                     BlocksCacheKey(DECODER, 0))
    chan.sync("register end")
    zero = torch.zeros(BLOCKS_NUM, KV_SHAPE)
    while True:
        msg = chan.recv(60)
        if msg[0] == "done":
            break
        if msg[0] == "reset":
            for t in tensors:
                t.zero_()
            chan.send(("ok", "reset"))
            continue
        n = msg[1]  # layers 0..n-1 must have landed, none after
        wrong = [j for j, t in enumerate(tensors) if not torch.equal(t, _expected(j) if j // 2 < n else zero)]
        chan.send(("ok", n) if not wrong else ("wrong tensors", n, wrong))
    chan.sync("unlinked")
    ret, _ = datadist.unlink_clusters([_cluster(PROMPT, 0, 0)], 5000, force=True)
    assert ret == LLMStatusCode.LLM_SUCCESS, ret
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()
