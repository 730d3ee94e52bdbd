"""A prefill and a decode process move a model-shaped paged cache of torch
tensors both ways, byte-verified, over each data path; errors carry the right
status."""
import pytest

from conftest import run_roles


@pytest.mark.parametrize("backend", ["tcp", "shm"])
def test_kv_cache_pull_push_and_errors(backend):
    run_roles([("kv_prefill", {"backend": backend}), ("kv_decode", {"backend": backend})])


def test_a_pull_by_cache_key_uses_the_key_up_and_frees_a_dropped_cache():
    run_roles([("keyed_prompt", {}), ("keyed_decoder", {})])
