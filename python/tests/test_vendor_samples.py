"""The vendor's Python samples (hicann/hixl examples/python/llm_datadist:
pull_blocks, pull_cache, push_blocks, switch_role, pull_blocks_xpyd, and those in
peers_samples.py) as tests of our module."""
import pytest

from conftest import free_port, run_roles
from peers import _rank_table


def test_pull_blocks_sample():
    rt = _rank_table(free_port(), free_port())
    run_roles([("sample_pull_blocks_prompt", {"rank_table": rt}), ("sample_pull_blocks_decoder", {"rank_table": rt})])


def test_pull_cache_sample():
    rt = _rank_table(free_port(), free_port())
    run_roles([("sample_pull_cache_prompt", {"rank_table": rt}), ("sample_pull_cache_decoder", {"rank_table": rt})])


@pytest.mark.parametrize("transfer_backend", ["", "hixl"])
def test_push_blocks_sample(transfer_backend):
    kw = {"port": free_port(), "decoder_port": free_port(), "transfer_backend": transfer_backend}
    run_roles([("sample_push_blocks_prompt", kw), ("sample_push_blocks_decoder", kw)])


def test_switch_role_sample():
    kw = {"port": free_port()}
    run_roles([("sample_switch_role_prompt", kw), ("sample_switch_role_decoder", kw)])


# The samples our module failed before (see peers_samples.py).

def test_pull_blocks_swap_sample():
    rt = _rank_table(free_port(), free_port())
    run_roles([("peers_samples:pull_blocks_swap_prompt", {"rank_table": rt}),
               ("peers_samples:pull_blocks_swap_decoder", {"rank_table": rt})])


def test_pull_from_cache_to_blocks_sample():
    rt = _rank_table(free_port(), free_port())
    run_roles([("peers_samples:cache_to_blocks_prompt", {"rank_table": rt}),
               ("peers_samples:cache_to_blocks_decoder", {"rank_table": rt})])


def test_push_cache_sample():
    kw = {"port": free_port(), "decoder_port": free_port()}
    run_roles([("peers_samples:push_cache_prompt", kw), ("peers_samples:push_cache_decoder", kw)])


def test_transfer_cache_async_sample():
    kw = {"port": free_port(), "decoder_port": free_port()}
    run_roles([("peers_samples:async_prompt", kw), ("peers_samples:async_decoder", kw)])


@pytest.mark.parametrize("backend,rounds", [("hixl", 200), ("tcp", 30)])
def test_hixl_transfer_backend_sample_mutual_link(backend, rounds):
    kw = {"port": free_port(), "decoder_port": free_port(), "rounds": rounds, "transfer_backend": backend}
    run_roles([("peers_samples:mutual_prompt", kw), ("peers_samples:mutual_decoder", kw)], timeout=240)


def test_pull_blocks_xpyd_sample():
    # Three prompts, one decoder linking to all at once (cluster ids from ip:port).
    ports = [free_port() for _ in range(3)]
    run_roles([("peers_xpyd:prompts", {"prompt_ports": ports}),
               ("peers_xpyd:decoder", {"prompt_ports": ports, "decoder_port": free_port()})])
