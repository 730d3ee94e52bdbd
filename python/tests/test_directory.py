"""Discovery through a real etcd (our llm.Directory extension): LLMConfig's
directory keys, and the cache-manager link() with a rank table whose
entries carry no address. Skips where no etcd binary is installed."""
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import free_port, run_roles


@pytest.fixture(scope="module")
def etcd():
    binary = os.environ.get("LLDD_ETCD") or shutil.which("etcd") or (
        "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None)
    if not binary:
        pytest.skip("no etcd binary (Debian: apt-get install etcd-server)")
    client, peer = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="lldd-etcd-") as data:
        c, p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        proc = subprocess.Popen([binary, "--name=t", f"--data-dir={data}/d", f"--listen-client-urls={c}",
                                 f"--advertise-client-urls={c}", f"--listen-peer-urls={p}",
                                 f"--initial-advertise-peer-urls={p}", f"--initial-cluster=t={p}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(urllib.request.Request(f"{c}/v3/kv/range", data=b'{"key":"AA=="}'),
                                           timeout=1).read()
                    break
                except OSError:
                    assert proc.poll() is None, "etcd exited at start"
                    assert time.monotonic() < deadline, "etcd did not answer within 30 s"
                    time.sleep(0.05)
            yield f"etcd://127.0.0.1:{client}"
        finally:
            proc.kill()
            proc.wait()


def test_config_emits_directory_keys():
    from llm_datadist import LLMConfig
    cfg = LLMConfig()
    cfg.directory = "etcd://10.0.0.1:2379"
    cfg.directory_prefix = "/x/"
    cfg.directory_ttl = 3
    opts = cfg.generate_options()
    assert opts["llm.Directory"] == "etcd://10.0.0.1:2379"
    assert opts["llm.DirectoryPrefix"] == "/x/"
    assert opts["llm.DirectoryTtl"] == "3"
    with pytest.raises(Exception):
        cfg.directory_ttl = 0


def test_rank_table_resolved_by_cluster_id(etcd):
    kw = {"directory": etcd, "prefix": "/py/rank_table/"}
    run_roles([("directory_prompt", kw), ("directory_decoder", kw)])
