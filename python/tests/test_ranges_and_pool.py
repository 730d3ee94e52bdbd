"""transfer_cache_async to raw addresses and from a cache into blocks,
pull_blocks by CacheKey with layer ranges, and caches carved from a memory
pool: two processes on loopback (peers_ranges.py)."""
from conftest import free_port, run_roles


def test_ranges_and_pool():
    kw = {"port": free_port(), "sender_port": free_port()}
    run_roles([("peers_ranges:owner", kw), ("peers_ranges:sender", kw)])
