"""The call sequence of vllm-ascend's LLM-DataDist connector
(vllm_ascend/distributed/llmdatadist_c_mgr_connector.py): cache-manager link
by rank table from both sides, per-request pulls of two MLA caches from a
worker thread, unlink, and no explicit finalize (the atexit handler runs it)."""
import os

from conftest import free_port, run_roles


def test_vllm_ascend_connector_sequence(tmp_path):
    # The connector's rank table has no device_port; on one host the
    # listening rank (the prefill, rank 0) takes LLM_DATADIST_DEVICE_PORT.
    env = {"LLM_DATADIST_DEVICE_PORT": str(free_port())}
    markers = {name: str(tmp_path / f"{name}.exit") for name in ("vllm_prefill", "vllm_decode")}
    run_roles([("vllm_prefill", {"env": env, "exit_marker": markers["vllm_prefill"]}),
               ("vllm_decode", {"env": env, "exit_marker": markers["vllm_decode"]})])
    for name, path in markers.items():
        assert os.path.exists(path), f"{name}: the at-exit check never ran"
        with open(path) as f:
            state = f.read()
        assert state == "finalized", f"{name}: at exit the instance was {state}"
