"""Roles following the vendor's pull_blocks_xpyd_sample.py: several prompt
processes, each with a blocks cache keyed by its own cluster id (its
ip:port as a number, as the sample makes it), and one decoder that links to
all of them in one link_clusters call and pulls blocks [0, 1] of each into
its blocks [0, 2] in turn. After each pull the decoder's rows 0 and 2 hold
that prompt's value and row 1 is untouched."""
import multiprocessing as mp
import threading
import socket
import struct

import torch

from llm_datadist import (BlocksCacheKey, CacheDesc, DataType, LLMClusterInfo, LLMConfig, LLMDataDist, LLMRole,
                          LLMStatusCode, Placement)

BLOCKS_NUM, KV_SHAPE = 3, 10


def cluster_id(ip_port):
    ip, port = ip_port.split(":")
    return (struct.unpack("!I", socket.inet_aton(ip))[0] << 16) | int(port)


def _init(role, ip_port, listen):
    datadist = LLMDataDist(role, cluster_id(ip_port))
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.local_comm_res = ""
    if listen:
        cfg.listen_ip_info = ip_port
    datadist.init(cfg.generate_options())
    return datadist


def _desc():
    return CacheDesc(num_tensors=1, shape=[BLOCKS_NUM, KV_SHAPE], data_type=DataType.DT_FLOAT,
                     placement=Placement.DEVICE)


def _serve(ip_port, ready, done):
    datadist = _init(LLMRole.PROMPT, ip_port, True)
    cm = datadist.cache_manager
    tensor = torch.full((BLOCKS_NUM, KV_SHAPE), cluster_id(ip_port), dtype=torch.float)
    cache = cm.register_blocks_cache(_desc(), [int(tensor.data_ptr())], BlocksCacheKey(cluster_id(ip_port), 0))
    ready.set()
    assert done.wait(120), "the decoder never finished"
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()


def prompts(chan, prompt_ports):
    """Runs the first prompt here and the others in processes of their own
    (one LLMDataDist per process, as the vendor allows)."""
    ctx = mp.get_context("spawn")
    done = ctx.Event()
    others = []
    for port in prompt_ports[1:]:
        ready = ctx.Event()
        p = ctx.Process(target=_serve, args=(f"127.0.0.1:{port}", ready, done))
        p.start()
        others.append((p, ready))
    for _, ready in others:
        assert ready.wait(60), "a prompt process did not start"
    here_ready = ctx.Event()
    t = threading.Thread(target=_serve, args=(f"127.0.0.1:{prompt_ports[0]}", here_ready, done))
    t.start()
    assert here_ready.wait(60)
    chan.sync("prompts ready")
    chan.sync("decoder done")
    done.set()
    t.join(60)
    for p, _ in others:
        p.join(60)
        assert p.exitcode == 0, f"prompt process exited with {p.exitcode}"


def decoder(chan, prompt_ports, decoder_port):
    local = f"127.0.0.1:{decoder_port}"
    datadist = _init(LLMRole.DECODER, local, False)
    cm = datadist.cache_manager
    tensor = torch.zeros(BLOCKS_NUM, KV_SHAPE)
    cache = cm.register_blocks_cache(_desc(), [int(tensor.data_ptr())], BlocksCacheKey(cluster_id(local), 0))
    chan.sync("prompts ready")
    remotes = [f"127.0.0.1:{p}" for p in prompt_ports]
    clusters = []
    for remote in remotes:
        c = LLMClusterInfo()
        c.remote_cluster_id = cluster_id(remote)
        c.append_local_ip_info("127.0.0.1", 0)
        c.append_remote_ip_info("127.0.0.1", int(remote.split(":")[1]))
        clusters.append(c)
    ret, rets = datadist.link_clusters(clusters, 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, (ret, rets)
    for remote in remotes:
        cm.pull_blocks(BlocksCacheKey(cluster_id(remote), 0), cache, src_blocks=[0, 1], dst_blocks=[0, 2])
        value = float(cluster_id(remote))
        assert torch.all(tensor[0] == value) and torch.all(tensor[2] == value), f"blocks from {remote} differ"
        assert not tensor[1].any(), "block 1 was written"
    ret, rets = datadist.unlink_clusters(clusters, 5000)
    assert ret == LLMStatusCode.LLM_SUCCESS, (ret, rets)
    cm.unregister_cache(cache.cache_id)
    datadist.finalize()
    chan.sync("decoder done")
