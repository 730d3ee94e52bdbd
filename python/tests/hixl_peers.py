"""The roles of test_hixl.py, one function per process (run by
conftest.run_roles). The server is an engine that listens at `server`; the
client is a client-only engine. Every byte moved is checked where it lands."""
import ctypes
import os
import random
import signal
import threading
import time

import hixl
from conftest import freeze, queued_bytes, wait_for

TIMEOUT_MS = 5000


def start(name, **options):
    engine = hixl.Hixl()
    ret = engine.initialize(name, {k: str(v) for k, v in options.items()})
    assert ret == hixl.SUCCESS, ret
    return engine


def host_buffer(engine, data):
    """A registered host buffer holding `data`: (buffer, address, handle)."""
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    addr = ctypes.addressof(buf)
    ret, handle = engine.register_mem(hixl.MemDesc(addr, len(data)), hixl.MEM_HOST)
    assert ret == hixl.SUCCESS and handle != 0, (ret, handle)
    return buf, addr, handle


def pattern(seed, n):
    return random.Random(seed).randbytes(n)  # not periodic: a block landing at a wrong offset shows


def wait_until(fn, what, timeout=10):
    """Polls fn() until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


# --- The vendor sample's sequence, on torch CPU tensors ------------------------

SAMPLE_BYTES, SAMPLE_BLOCK = 1 << 20, 16 << 10


def sample_server(chan, server):
    import torch
    engine = start(server)
    buf = torch.full((SAMPLE_BYTES,), 0xAA, dtype=torch.uint8)
    ret, handle = engine.register_mem(hixl.MemDesc(buf.data_ptr(), SAMPLE_BYTES), hixl.MemType.MEM_HOST)
    assert ret == hixl.SUCCESS, ret
    chan.send(buf.data_ptr())
    # The client wrote a pattern back before its notification: visible here.
    got = wait_until(lambda: engine.get_notifies()[1], "the client's notification")
    assert [(n.name, n.notify_msg) for n in got] == [("written", "pattern 3")]
    assert bytes(buf.numpy()) == pattern(3, SAMPLE_BYTES)
    chan.sync("done")
    assert engine.deregister_mem(handle) == hixl.SUCCESS
    engine.finalize()


def sample_client(chan, server):
    import torch
    engine = start("127.0.0.1")  # no port: a client-only engine
    buf = torch.zeros(SAMPLE_BYTES, dtype=torch.uint8)
    ret, handle = engine.register_mem(hixl.MemDesc(buf.data_ptr(), SAMPLE_BYTES), hixl.MEM_HOST)
    assert ret == hixl.SUCCESS, ret
    remote = chan.recv()
    assert engine.connect(server, timeout_in_millis=TIMEOUT_MS) == hixl.SUCCESS
    assert engine.connect(server) == hixl.ALREADY_CONNECTED
    ops = [hixl.TransferOpDesc(local_addr=buf.data_ptr() + off, remote_addr=remote + off, len=SAMPLE_BLOCK)
           for off in range(0, SAMPLE_BYTES, SAMPLE_BLOCK)]
    assert engine.transfer_sync(server, hixl.TransferOp.READ, ops, timeout_in_millis=TIMEOUT_MS) == hixl.SUCCESS
    assert bytes(buf.numpy()) == b"\xaa" * SAMPLE_BYTES

    buf.copy_(torch.frombuffer(bytearray(pattern(3, SAMPLE_BYTES)), dtype=torch.uint8))
    assert engine.transfer_sync(server, hixl.WRITE, ops, TIMEOUT_MS) == hixl.SUCCESS
    assert engine.send_notify(server, hixl.NotifyDesc("written", "pattern 3"), TIMEOUT_MS) == hixl.SUCCESS

    # Past the end of the peer's registration, and from unregistered local memory.
    past_end = hixl.TransferOpDesc(buf.data_ptr(), remote + SAMPLE_BYTES - 8, 16)
    assert engine.transfer_sync(server, hixl.READ, [past_end], TIMEOUT_MS) == hixl.PARAM_INVALID
    scratch = ctypes.create_string_buffer(16)
    unregistered = hixl.TransferOpDesc(ctypes.addressof(scratch), remote, 16)
    assert engine.transfer_sync(server, hixl.READ, [unregistered], TIMEOUT_MS) == hixl.PARAM_INVALID
    ret, req = engine.transfer_async(server, hixl.READ, [past_end])
    assert (ret, req) == (hixl.PARAM_INVALID, 0)

    assert engine.disconnect(server, timeout_in_millis=TIMEOUT_MS) == hixl.SUCCESS
    assert engine.transfer_sync(server, hixl.READ, ops[:1], TIMEOUT_MS) == hixl.NOT_CONNECTED
    chan.sync("done")
    assert engine.deregister_mem(handle) == hixl.SUCCESS
    engine.finalize()


# --- Async connect and transfers, memory registered after connect, notifies ---

ASYNC_OPS, ASYNC_OP = 8, 4096
NOTIFIES = 5


def async_server(chan, server):
    engine = start(server)
    keep = [host_buffer(engine, pattern(1, ASYNC_OPS * ASYNC_OP))]  # buffers live until finalize
    chan.send(keep[0][1])
    chan.sync("connected")
    keep.append(host_buffer(engine, pattern(2, ASYNC_OPS * ASYNC_OP)))  # after the client connected
    chan.send(keep[1][1])
    notifies = []

    def all_arrived():
        notifies.extend(engine.get_notifies()[1])
        return len(notifies) >= NOTIFIES
    wait_until(all_arrived, "the notifications")
    assert [(n.name, n.notify_msg) for n in notifies] == [(f"n{i}", f"msg {i}") for i in range(NOTIFIES)]
    chan.sync("done")
    engine.finalize()


def async_client(chan, server):
    engine = start("127.0.0.1", **{hixl.OPTION_AUTO_CONNECT: 0})
    size = ASYNC_OPS * ASYNC_OP
    local, at, _ = host_buffer(engine, bytes(2 * size))
    first = chan.recv()
    assert engine.connect_async(server, timeout_in_millis=TIMEOUT_MS) == hixl.SUCCESS
    wait_until(lambda: engine.get_async_connect_status(server)[1] == hixl.CONNECTED, "CONNECTED")
    ret, statuses = engine.get_all_async_connect_status()
    assert ret == hixl.SUCCESS and statuses == {server: hixl.AsyncConnectStatus.CONNECTED}, (ret, statuses)
    chan.sync("connected")
    second = chan.recv()

    reqs = {}
    for i in range(2 * ASYNC_OPS):
        remote = (first if i < ASYNC_OPS else second) + (i % ASYNC_OPS) * ASYNC_OP
        args = hixl.TransferArgs()
        args.user_data = 1000 + i
        ret, req = engine.transfer_async(server, hixl.READ, [hixl.TransferOpDesc(at + i * ASYNC_OP, remote, ASYNC_OP)],
                                         args)
        assert ret == hixl.SUCCESS and req != 0, (ret, req)
        reqs[req] = 1000 + i
    # One request polled by id until it ends (which also releases it)...
    one = next(iter(reqs))

    def ended():
        got = engine.get_transfer_status(one)
        return got if got[1] != hixl.TransferStatus.WAITING else None
    assert wait_until(ended, "a request's end") == (hixl.SUCCESS, hixl.TransferStatus.COMPLETED)
    assert engine.get_transfer_status(one)[0] == hixl.PARAM_INVALID
    del reqs[one]
    # ...and the others through the all-requests query, with their user_data.
    done = {}
    query = hixl.GetTransferStatusArgs(max_query_count=4, skip_waiting=True)

    def collect():
        ret, results = engine.get_all_transfer_status(query)
        assert ret == hixl.SUCCESS and len(results) <= 4, (ret, results)
        done.update((r.req, (r.user_data, r.status)) for r in results if r.status != hixl.TransferStatus.WAITING)
        return len(done) == len(reqs)
    wait_until(collect, "every request's end")
    assert done == {req: (ud, hixl.TransferStatus.COMPLETED) for req, ud in reqs.items()}, done
    assert local.raw == pattern(1, size) + pattern(2, size)

    for i in range(NOTIFIES):
        assert engine.send_notify(server, hixl.NotifyDesc(name=f"n{i}", notify_msg=f"msg {i}")) == hixl.SUCCESS
    chan.sync("done")
    engine.finalize()


# --- The GIL: released while a transfer waits on a stopped peer ---------------
# A worker thread reads from the peer while it is stopped (SIGSTOP). The main
# thread sees the request arrive there (its socket's unread bytes) while the
# worker has not returned, and only then continues the peer: the read must
# succeed. Were the GIL held in the call, the main thread could act only
# after it ended, TIMEOUT. Then a read that the peer never answers ends
# TIMEOUT at its deadline, with no byte landing.

def frozen_server(chan, server):
    engine = start(server, **{"llm.TransferBackend": "tcp"})  # shm would read a stopped peer's memory directly
    buf, addr, _ = host_buffer(engine, pattern(5, 64 << 10))  # buf: kept alive while registered
    chan.send((addr, os.getpid()))
    chan.sync("done")
    engine.finalize()


def frozen_client(chan, server):
    engine = start("127.0.0.1", **{"llm.TransferBackend": "tcp"})
    local, at, _ = host_buffer(engine, bytes(64 << 10))
    remote, pid = chan.recv()
    op = hixl.TransferOpDesc(at, remote, 64 << 10)
    assert engine.connect(server, TIMEOUT_MS) == hixl.SUCCESS
    assert engine.transfer_sync(server, hixl.READ, [op], TIMEOUT_MS) == hixl.SUCCESS  # the peer's memory known
    ctypes.memset(at, 0, 64 << 10)
    result = []
    worker = threading.Thread(target=lambda: result.append(engine.transfer_sync(server, hixl.READ, [op], TIMEOUT_MS)))
    assert not queued_bytes(pid), "the peer has unread bytes before the transfer"
    freeze(pid)
    try:
        worker.start()
        wait_for(lambda: queued_bytes(pid), "the worker's request at the stopped peer")
        assert worker.is_alive() and not result, f"the transfer ended against a stopped peer: {result}"
    finally:
        os.kill(pid, signal.SIGCONT)
    worker.join(10)
    assert result == [hixl.SUCCESS] and local.raw == pattern(5, 64 << 10), result

    ctypes.memset(at, 0xEE, 64 << 10)
    freeze(pid)
    try:
        assert engine.transfer_sync(server, hixl.READ, [op], 300) == hixl.TIMEOUT
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(0.1)  # a late byte would land now
    assert local.raw == b"\xee" * (64 << 10)
    chan.sync("done")
    engine.finalize()
