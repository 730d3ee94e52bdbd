#!/usr/bin/env python3
"""The Python module with torch CUDA tensors, for scripts/gpu-check.sh.

A prefill process registers a paged cache of CUDA tensors; a decode process
registers its own CUDA tensors, pulls scattered blocks (same host: the
cuda_ipc path) and pushes some back, and both check every byte with torch
on the GPU. Then the same over the tcp path (GPU memory staged through
pinned host buffers). Prints one line per check and exits 0 when all passed,
77 when it cannot run here (no torch, no CUDA, or a module built for
another Python), 1 on a failure.

    PYTHONPATH=<dir holding llm_datadist/> python3 gpu_check_torch.py
"""
import multiprocessing as mp
import sys
import time
import traceback

SKIP = 77
PROMPT, DECODER = 1, 2
NUM_TENSORS, BLOCKS, BLOCK_BYTES = 8, 64, 64 << 10


def cache_tensors(torch, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randint(0, 256, (BLOCKS, BLOCK_BYTES), dtype=torch.uint8, device="cuda", generator=g)
            for _ in range(NUM_TENSORS)]


def start(role, cluster, backend, listen=None):
    from llm_datadist import LLMConfig, LLMDataDist, LLMRole
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.enable_cache_manager = True
    cfg.transfer_backend = backend
    if listen:
        cfg.listen_ip_info = listen
    dd = LLMDataDist(LLMRole.PROMPT if role == PROMPT else LLMRole.DECODER, cluster)
    dd.init(cfg.generate_options())
    return dd


def prefill(conn, backend):
    import torch
    from llm_datadist import BlocksCacheKey, CacheDesc, DataType, Placement
    dd = start(PROMPT, PROMPT, backend, listen="127.0.0.1:0")
    tensors = cache_tensors(torch, 1)
    desc = CacheDesc(NUM_TENSORS, [BLOCKS, BLOCK_BYTES], DataType.DT_UINT8, Placement.DEVICE)
    cache = dd.cache_manager.register_blocks_cache(desc, [t.data_ptr() for t in tensors], BlocksCacheKey(PROMPT, 0))
    conn.send(dd.listen_port())
    pushed = conn.recv()  # {dst block: decoder's seed-2 block}
    want = cache_tensors(torch, 2)
    for i in range(NUM_TENSORS):
        for d, s in pushed.items():
            assert torch.equal(tensors[i][d], want[i][s]), f"pushed block {d} of tensor {i} differs"
    conn.send("verified")
    conn.recv()
    dd.cache_manager.unregister_cache(cache.cache_id)
    dd.finalize()


def decode(conn, backend):
    import torch
    from llm_datadist import BlocksCacheKey, CacheDesc, DataType, LLMClusterInfo, Placement
    dd = start(DECODER, DECODER, backend)
    c = LLMClusterInfo()
    c.remote_cluster_id = PROMPT
    c.append_remote_ip_info("127.0.0.1", conn.recv())
    dd.link_clusters([c], 5000)
    mine = [torch.zeros(BLOCKS, BLOCK_BYTES, dtype=torch.uint8, device="cuda") for _ in range(NUM_TENSORS)]
    desc = CacheDesc(NUM_TENSORS, [BLOCKS, BLOCK_BYTES], DataType.DT_UINT8, Placement.DEVICE)
    cache = dd.cache_manager.register_blocks_cache(desc, [t.data_ptr() for t in mine])
    src, dst = list(range(5, 45)), list(range(40, 0, -1))
    start_t = time.perf_counter()
    dd.cache_manager.pull_blocks(BlocksCacheKey(PROMPT, 0), cache, src, dst)
    took = time.perf_counter() - start_t
    theirs = cache_tensors(torch, 1)
    for i in range(NUM_TENSORS):
        for s, d in zip(src, dst):
            assert torch.equal(mine[i][d], theirs[i][s]), f"pulled block {d} of tensor {i} differs"
    nbytes = NUM_TENSORS * len(src) * BLOCK_BYTES
    print(f"  {backend}: pulled {nbytes >> 20} MiB of CUDA tensors in {took * 1e3:.1f} ms (first call), verified")
    seeded = cache_tensors(torch, 2)
    for i in range(NUM_TENSORS):
        mine[i].copy_(seeded[i])
    torch.cuda.synchronize()
    pushed = {d: s for s, d in zip(range(0, 10), range(50, 60))}
    dd.cache_manager.push_blocks(BlocksCacheKey(PROMPT, 0), cache, list(pushed.values()), list(pushed.keys()))
    conn.send(pushed)
    assert conn.recv() == "verified"
    print(f"  {backend}: pushed 10 blocks back, verified by the prefill process")
    dd.cache_manager.unregister_cache(cache.cache_id)
    conn.send("done")
    dd.finalize()


def run(fn, conn, backend, results):
    try:
        fn(conn, backend)
        results.put((fn.__name__, None))
    except BaseException:  # noqa: B902 - everything goes to the parent
        results.put((fn.__name__, traceback.format_exc()))


def main():
    try:
        import torch
    except ImportError:
        print("gpu_check_torch: SKIPPED: no torch for this Python")
        return SKIP
    try:
        import llm_datadist  # noqa: F401
    except ImportError as e:
        print(f"gpu_check_torch: SKIPPED: cannot import llm_datadist here ({e}; built for another Python?)")
        return SKIP
    if not torch.cuda.is_available():
        print("gpu_check_torch: SKIPPED: torch has no usable CUDA (the module imported fine)")
        return SKIP
    ctx = mp.get_context("spawn")
    failed = False
    for backend in ("cuda_ipc", "tcp"):
        a, b = ctx.Pipe()
        results = ctx.Queue()
        procs = [ctx.Process(target=run, args=(prefill, a, backend, results)),
                 ctx.Process(target=run, args=(decode, b, backend, results))]
        for p in procs:
            p.start()
        for _ in procs:
            try:
                name, error = results.get(timeout=120)
            except Exception:  # noqa: B902 - queue.Empty
                name, error = "?", "no result within 120 s"
            if error:
                failed = True
                print(f"gpu_check_torch: {backend} {name} FAILED:\n{error}")
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    print("gpu_check_torch: " + ("FAILED" if failed else "PASSED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
