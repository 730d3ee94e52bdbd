"""The `hixl` module: the vendor's Python HIXL API on our engine. Two real
processes on loopback for the transfers (roles in hixl_peers.py); the
statuses of a lone engine in this process."""
import ctypes
import os

import pytest

import hixl
from conftest import free_port, run_roles


def run_pair(name):
    server = f"127.0.0.1:{free_port()}"
    run_roles([(f"hixl_peers:{name}_server", {"server": server}), (f"hixl_peers:{name}_client", {"server": server})])


def test_vendor_sample_sequence_on_torch_cpu_tensors():
    run_pair("sample")


def test_async_transfers_notifies_and_memory_registered_after_connect():
    run_pair("async")


def test_gil_released_while_a_transfer_waits_on_a_stopped_peer():
    run_pair("frozen")


def test_statuses_of_a_lone_engine():
    engine = hixl.Hixl()
    # Not initialized: FAILED, with empty outputs.
    assert engine.register_mem(hixl.MemDesc(0x1000, 16), hixl.MEM_HOST) == (hixl.FAILED, 0)
    assert engine.get_notifies() == (hixl.FAILED, [])
    assert engine.get_all_async_connect_status() == (hixl.FAILED, {})
    assert engine.initialize("127.0.0.1:99999") == hixl.PARAM_INVALID

    assert engine.initialize("127.0.0.1") == hixl.SUCCESS
    assert engine.initialize("127.0.0.1:1") == hixl.SUCCESS  # as the vendor's: a second initialize is a no-op
    buf = ctypes.create_string_buffer(64)
    addr = ctypes.addressof(buf)
    assert engine.register_mem(hixl.MemDesc(addr, 0), hixl.MEM_HOST)[0] == hixl.PARAM_INVALID
    ret, handle = engine.register_mem(hixl.MemDesc(addr, 64), hixl.MEM_HOST)
    assert ret == hixl.SUCCESS and handle != 0
    assert engine.register_mem(hixl.MemDesc(addr, 64), hixl.MEM_HOST) == (hixl.SUCCESS, handle)

    nobody = f"127.0.0.1:{free_port()}"  # no auto-connect: never dialled
    op = hixl.TransferOpDesc(addr, 0x1000, 16)
    assert engine.transfer_sync(nobody, hixl.READ, [op]) == hixl.NOT_CONNECTED
    assert engine.transfer_async(nobody, hixl.WRITE, [op]) == (hixl.NOT_CONNECTED, 0)
    assert engine.send_notify(nobody, hixl.NotifyDesc("a", "b")) == hixl.NOT_CONNECTED
    assert engine.get_async_connect_status(nobody) == (hixl.SUCCESS, hixl.AsyncConnectStatus.NOT_CONNECT)
    assert engine.get_transfer_status(12345) == (hixl.PARAM_INVALID, hixl.TransferStatus.FAILED)
    assert engine.get_all_transfer_status() == (hixl.SUCCESS, [])
    assert engine.deregister_mem(handle) == hixl.SUCCESS

    assert engine.finalize() is None
    engine.finalize()
    assert engine.connect(nobody) == hixl.FAILED
    assert hixl.get_capability(hixl.AUTO_CONNECT) == (hixl.SUCCESS, hixl.FEATURE_SUPPORTED)


def test_cuda_tensors_as_device_memory():
    """Two engines in this process, both on CUDA tensors (MEM_DEVICE: the GPU
    layer); skipped where torch has no CUDA."""
    if not os.path.exists("/dev/nvidiactl"):  # before importing torch: a second of the suite's budget
        pytest.skip("no NVIDIA driver here")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    name = f"127.0.0.1:{free_port()}"
    server, client = hixl.Hixl(), hixl.Hixl()
    assert server.initialize(name) == hixl.SUCCESS and client.initialize("127.0.0.1") == hixl.SUCCESS
    try:
        src = torch.arange(1 << 16, dtype=torch.int32, device="cuda").view(torch.uint8)
        dst = torch.zeros_like(src)
        for engine, t in ((server, src), (client, dst)):
            assert engine.register_mem(hixl.MemDesc(t.data_ptr(), t.numel()), hixl.MEM_DEVICE)[0] == hixl.SUCCESS
        torch.cuda.synchronize()
        assert client.connect(name, 5000) == hixl.SUCCESS
        op = hixl.TransferOpDesc(dst.data_ptr(), src.data_ptr(), src.numel())
        assert client.transfer_sync(name, hixl.READ, [op], 5000) == hixl.SUCCESS
        assert torch.equal(dst, src)
    finally:
        client.finalize()
        server.finalize()
