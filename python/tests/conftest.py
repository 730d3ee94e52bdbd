"""Test harness: every cross-process test runs its roles in spawned Python
processes (real prefill and decode instances on loopback) that talk over a
pipe; every wait is bounded."""
import multiprocessing as mp
import os
import socket
import sys
import time
import traceback

import pytest

sys.path.insert(0, os.path.dirname(__file__))

_CTX = mp.get_context("spawn")


class Chan:
    """One end of a pipe between the two roles; recv() never waits forever."""

    def __init__(self, conn):
        self._conn = conn

    def send(self, obj):
        self._conn.send(obj)

    def recv(self, timeout=60):
        if not self._conn.poll(timeout):
            raise TimeoutError(f"peer sent nothing within {timeout} s")
        return self._conn.recv()

    def sync(self, tag="sync", timeout=60):
        self.send(("sync", tag))
        got = self.recv(timeout)
        assert got == ("sync", tag), f"out of step with peer: expected {tag!r}, got {got!r}"


def _check_finalized_at_exit(path):
    """Registered before llm_datadist is imported, so it runs after the
    module's own atexit handler: records whether that finalized the instance."""
    import atexit

    def check():
        mod = sys.modules.get("llm_datadist.llm_datadist")
        state = "no-module" if mod is None else (
            "finalized" if mod.LLMDataDist.llm_engine_instance is None else "not-finalized")
        with open(path, "w") as f:
            f.write(state)
    atexit.register(check)


def _child(fn_name, chan_conn, result_q, kwargs):
    os.environ.update(kwargs.pop("env", {}))
    marker = kwargs.pop("exit_marker", None)
    if marker:
        _check_finalized_at_exit(marker)
    import importlib
    module, _, fn = fn_name.rpartition(":")  # "module:function", or a function of peers
    try:
        getattr(importlib.import_module(module or "peers"), fn)(Chan(chan_conn), **kwargs)
        result_q.put((fn_name, "ok", ""))
    except BaseException:  # noqa: B902 - report everything to the parent
        result_q.put((fn_name, "error", traceback.format_exc()))
        raise


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_roles(roles, timeout=120):
    """roles: [(peers function name, kwargs)] of two. Runs them in two spawned
    processes joined by a pipe; fails with the children's tracebacks."""
    assert len(roles) == 2
    a, b = _CTX.Pipe()
    q = _CTX.Queue()
    procs = []
    for (name, kwargs), conn in zip(roles, (a, b)):
        p = _CTX.Process(target=_child, args=(name, conn, q, kwargs), name=name)
        p.start()
        procs.append(p)
    results = {}
    errors = []
    import time
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            errors.append(f"{p.name} did not finish within {timeout} s")
            p.kill()
            p.join(10)
    while True:
        try:
            name, status, tb = q.get(timeout=1)
        except Exception:
            break
        results[name] = status
        if status != "ok":
            errors.append(f"--- {name} failed:\n{tb}")
    for p, (name, _) in zip(procs, roles):
        if name not in results and not any(name in e for e in errors):
            errors.append(f"{name} exited with code {p.exitcode} and reported nothing")
        elif p.exitcode not in (0, None) and results.get(name) == "ok":
            errors.append(f"{name} reported success but exited with code {p.exitcode}")
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)
    return results


def _socket_inodes(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def queued_bytes(pid):
    """Bytes received but not read by process pid, per TCP socket: how a
    test sees that a request reached a stopped (SIGSTOP) peer."""
    inodes = _socket_inodes(pid)
    queued = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[9] in inodes:
                rx = int(cols[4].split(":")[1], 16)
                if rx:
                    queued[cols[9]] = rx
    return queued


def freeze(pid):
    """SIGSTOP pid and wait until every thread of it has stopped: the signal
    is asynchronous, and a thread still running could take a request off
    its socket (or answer it) after the caller went on."""
    import signal
    os.kill(pid, signal.SIGSTOP)

    def stopped():
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue  # the thread exited
            if state not in ("T", "t"):
                return False
        return True
    wait_for(stopped, f"process {pid} to stop")


def wait_for(pred, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
