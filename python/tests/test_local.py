"""One process: option keys, status values, types, local caches and their
zero-copy tensor views. Each test finalizes its instance (the vendor allows
one initialized LLMDataDist per process)."""
import numpy as np
import pytest
import torch

import llm_datadist
from llm_datadist import (BlocksCacheKey, CacheDesc, CacheKey, DataType, LLMConfig, LLMDataDist, LLMException,
                          LLMRole, LLMStatusCode, Placement)
from llm_datadist.llm_datadist import to_engine_options


@pytest.fixture
def datadist():
    made = []

    def make(role=LLMRole.PROMPT, cluster_id=1, options=None):
        dd = LLMDataDist(role, cluster_id)
        if options is None:
            cfg = LLMConfig()
            cfg.device_id = 0
            options = cfg.generate_options()
        dd.init(options)
        made.append(dd)
        return dd
    yield make
    for dd in made:
        dd.finalize()


def test_generate_options_emits_the_vendors_keys():
    cfg = LLMConfig()
    cfg.device_id = 3
    cfg.listen_ip_info = "127.0.0.1:26000"
    cfg.sync_kv_timeout = 5000
    cfg.enable_switch_role = True
    cfg.enable_cache_manager = True
    cfg.enable_remote_cache_accessible = True
    cfg.local_comm_res = ""
    cfg.transfer_backend = "hixl"
    cfg.buf_pool_cfg = '{"buf_pool_size": 1048576}'
    cfg.mem_pool_cfg = '{"memory_size": 67108864}'
    cfg.link_total_time = 10000
    cfg.link_retry_count = 3
    assert cfg.generate_options() == {
        "ge.exec.deviceId": "3",
        "ge.session_device_id": "3",
        "llm.SyncKvCacheWaitTime": "5000",
        "llm.BufPoolCfg": '{"buf_pool_size": 1048576}',
        "llm.MemPoolConfig": '{"memory_size": 67108864}',
        "llm.EnableCacheManager": "1",
        "llm.EnableRemoteCacheAccessible": "1",
        "llm.listenIpInfo": "127.0.0.1:26000",
        "llm.LinkTotalTime": "10000",
        "llm.LinkRetryCount": "3",
        "llm.LocalCommRes": "",
        "llm.TransferBackend": "hixl",
        "llm.EnableSwitchRole": "1",
        "llm.MemoryUtilization": "0.95",
    }
    multi = LLMConfig()
    multi.device_id = [2, 5]
    opts = multi.generate_options()
    assert opts["ge.exec.deviceId"] == "2;5" and opts["ge.session_device_id"] == "2"


def test_vendor_keys_map_onto_the_cpp_options():
    got = to_engine_options({"ge.exec.deviceId": "2;5", "ge.session_device_id": "2",
                             "llm.listenIpInfo": "10.0.0.1:26000", "llm.SyncKvCacheWaitTime": "300",
                             "llm.EnableCacheManager": "1", "llm.MemoryUtilization": "0.95",
                             "llm.TransferBackend": "hixl", "llm.LinkToken": "s3cret"})
    assert got == {"llm.DeviceId": "2", "llm.ListenIpInfo": "10.0.0.1:26000", "llm.SyncKvCacheWaitTime": "300",
                   "llm.TransferBackend": "hixl", "llm.LinkToken": "s3cret"}


def test_init_accepts_the_vendors_options(datadist):
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.listen_ip_info = "127.0.0.1:0"
    cfg.sync_kv_timeout = 2000
    cfg.enable_switch_role = True
    cfg.enable_cache_manager = True
    cfg.enable_remote_cache_accessible = True
    cfg.local_comm_res = ""
    cfg.transfer_backend = "hixl"
    cfg.mem_pool_cfg = '{"memory_size": 67108864}'
    dd = datadist(options=cfg.generate_options())
    assert dd.listen_port() > 0, "llm.listenIpInfo did not reach the engine"


def test_bad_vendor_options_fail_with_param_invalid():
    for options, names in (({"ge.exec.deviceId": "zero"}, "llm.DeviceId"),
                           ({"ge.exec.deviceId": "0", "llm.listenIpInfo": "nowhere"}, "llm.ListenIpInfo"),
                           ({"ge.exec.deviceId": "0", "llm.SyncKvCacheWaitTime": "-1"}, "llm.SyncKvCacheWaitTime")):
        dd = LLMDataDist(LLMRole.PROMPT, 1)
        with pytest.raises(LLMException) as e:
            dd.init(options)
        assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID
        assert names in str(e.value), str(e.value)
        assert llm_datadist.LLMDataDist.llm_engine_instance is None


def test_one_instance_per_process_and_finalize_is_idempotent(datadist):
    dd = datadist()
    other = LLMDataDist(LLMRole.DECODER, 2)
    cfg = LLMConfig()
    cfg.device_id = 0
    with pytest.raises(LLMException) as e:
        other.init(cfg.generate_options())
    assert e.value.status_code == LLMStatusCode.LLM_FAILED
    dd.finalize()
    dd.finalize()
    with pytest.raises(RuntimeError):
        dd.cache_manager


def test_status_codes_and_types_have_the_abi_values():
    assert LLMStatusCode.LLM_SUCCESS == 0
    assert LLMStatusCode.LLM_FAILED == 0xFFFFFFFF
    assert LLMStatusCode.LLM_KV_CACHE_NOT_EXIST == 0x5010B002
    assert LLMStatusCode.LLM_PARAM_INVALID == 0x5010B005
    assert LLMStatusCode.LLM_NOT_YET_LINK == 0x5010B007
    assert LLMStatusCode.LLM_LINK_FAILED == 0x5010B009
    assert LLMStatusCode.LLM_TIMEOUT == 0x5010B01A
    assert LLMStatusCode.LLM_OUT_OF_MEMORY == 0x5010B01C
    assert DataType.DT_BF16.value == 27 and DataType.DT_FLOAT16.value == 1 and DataType.DT_INT64.value == 9
    assert LLMRole.PROMPT == 1 and LLMRole.DECODER == 2 and LLMRole.MIX == 3
    assert Placement.HOST == 0 and Placement.DEVICE == 1
    key = BlocksCacheKey(prompt_cluster_id=4, model_id=1)
    assert (key.cluster_id, key.model_id) == (4, 1)
    ck = CacheKey(1, 2)
    assert (ck.cluster_id, ck.req_id, ck.model_id, ck.prefix_id) == (1, 2, 0, 2**64 - 1)
    with pytest.raises(LLMException):
        BlocksCacheKey(model_id=1)


def test_allocated_cache_is_exposed_without_copying(datadist):
    cm = datadist().cache_manager
    cache = cm.allocate_cache(CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST))
    tensors, arrays = cache.tensors(), cache.arrays()
    assert [t.data_ptr() for t in tensors] == cache.tensor_addrs
    assert [a.__array_interface__["data"][0] for a in arrays] == cache.tensor_addrs
    tensors[1][2] = torch.arange(8, dtype=torch.float32)
    assert arrays[1][2].tolist() == list(range(8))
    # Local copies, byte-checked through the views.
    other = cm.allocate_cache(CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST))
    cm.copy_cache(other, cache, dst_batch_index=0, src_batch_index=2)
    assert other.tensors()[1][0].tolist() == list(range(8))
    blocks = cm.allocate_blocks_cache(CacheDesc(1, [6, 4], DataType.DT_INT32, Placement.HOST))
    blocks.tensors()[0][1] = torch.tensor([1, 2, 3, 4], dtype=torch.int32)
    cm.copy_blocks(blocks, {1: [3, 5]})
    got = blocks.arrays()[0]
    assert got[3].tolist() == [1, 2, 3, 4] and got[5].tolist() == [1, 2, 3, 4] and got[4].tolist() == [0] * 4
    cm.deallocate_cache(other)
    with pytest.raises(LLMException):
        other.tensors()


def test_registration_checks_tensors(datadist):
    cm = datadist().cache_manager
    desc = CacheDesc(1, [4, 8], DataType.DT_FLOAT, Placement.HOST)
    for bad in (torch.zeros(4, 4), torch.zeros(8, 4).t(), np.zeros((4, 4), dtype=np.float32)):
        with pytest.raises(LLMException) as e:
            cm.register_cache(desc, [bad])
        assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID
    ok = torch.zeros(4, 8)
    cache = cm.register_blocks_cache(desc, [ok], BlocksCacheKey(1, 0))
    with pytest.raises(LLMException) as e:
        cm.register_blocks_cache(desc, [torch.zeros(4, 8)], BlocksCacheKey(1, 0))
    assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID, "a BlocksCacheKey was registered twice"
    with pytest.raises(LLMException) as e:
        cm.deallocate_cache(cache)  # registered, not allocated
    assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID
    cm.unregister_cache(cache.cache_id)


def test_link_needs_cache_manager_mode(datadist):
    dd = datadist()
    with pytest.raises(LLMException) as e:
        dd.link("c", {1: 0, 2: 1}, "{}")
    assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID


def test_link_failures_carry_per_cluster_statuses(datadist):
    from conftest import free_port
    from llm_datadist import LLMClusterInfo
    dd = datadist(role=LLMRole.DECODER, cluster_id=2)
    c = LLMClusterInfo()
    c.remote_cluster_id = 1
    c.append_remote_ip_info("127.0.0.1", free_port())  # nobody listens there
    ret, rets = dd.link_clusters([c], 1000)
    assert ret == LLMStatusCode.LLM_LINK_FAILED and rets == [LLMStatusCode.LLM_LINK_FAILED]
    with pytest.raises(LLMException) as e:
        dd.check_link_status(1)
    assert e.value.status_code == LLMStatusCode.LLM_NOT_YET_LINK


def test_a_forked_child_gets_an_error_and_exits_without_hanging(datadist):
    """The parent's instance is unusable in a forked child (its threads are
    not there): calls raise LLM_FAILED, and the exit path (the module's
    atexit finalize, the native destructor) returns instead of hanging."""
    import gc
    import os
    import time
    from llm_datadist import llm_datadist as module

    cm = datadist().cache_manager
    cm.allocate_cache(CacheDesc(1, [4, 8], DataType.DT_FLOAT, Placement.HOST))
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            try:
                cm.allocate_cache(CacheDesc(1, [4, 8], DataType.DT_FLOAT, Placement.HOST))
                code = 10
            except LLMException as e:
                if e.status_code != LLMStatusCode.LLM_FAILED or "fork" not in str(e):
                    code = 11
            module._shutdown_handler()
            module.LLMDataDist.llm_engine_instance = None
            gc.collect()
        except BaseException:
            code = 12
        os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the parent's instance")
        time.sleep(0.05)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (
        "10: the parent's instance answered; 11: wrong status or reason; 12: the exit path raised")
    # The parent's instance still works.
    cm.allocate_cache(CacheDesc(1, [4, 8], DataType.DT_FLOAT, Placement.HOST))


def test_every_vendor_status_code_with_its_value():
    # The vendor's LLMStatusCode members (hicann/hixl status.py), 0x5010B000 + n.
    vendor = ["WAIT_PROCESS_TIMEOUT", "KV_CACHE_NOT_EXIST", "REPEAT_REQUEST", "REQUEST_ALREADY_COMPLETED",
              "PARAM_INVALID", "ENGINE_FINALIZED", "NOT_YET_LINK", "ALREADY_LINK", "LINK_FAILED", "UNLINK_FAILED",
              "NOTIFY_PROMPT_UNLINK_FAILED", "CLUSTER_NUM_EXCEED_LIMIT", "PROCESSING_LINK", "DEVICE_OUT_OF_MEMORY",
              "PREFIX_ALREADY_EXIST", "PREFIX_NOT_EXIST", "SEQ_LENOVERLIMIT", "NO_FREE_BLOCK",
              "BLOCKS_OUT_OF_MEMORY"]
    for n, name in enumerate(vendor, 1):
        assert LLMStatusCode["LLM_" + name] == 0x5010B000 + n, name
    for name, value in (("EXIST_LINK", 0x18), ("FEATURE_NOT_ENABLED", 0x19), ("TIMEOUT", 0x1A), ("LINK_BUSY", 0x1B),
                        ("OUT_OF_MEMORY", 0x1C)):
        assert LLMStatusCode["LLM_" + name] == 0x5010B000 + value, name
    assert LLMStatusCode.LLM_DEVICE_MEM_ERROR == 507053 and LLMStatusCode.LLM_SUSPECT_REMOTE_ERROR == 507057
    assert LLMStatusCode.LLM_UNKNOWN_ERROR == -1


def test_unlink_of_a_comm_id_never_linked_is_not_yet_link(datadist):
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.enable_cache_manager = True
    dd = datadist(options=cfg.generate_options())
    with pytest.raises(LLMException) as e:
        dd.unlink(12345)
    assert e.value.status_code == LLMStatusCode.LLM_NOT_YET_LINK


def test_user_cache_ids_start_at_1_and_cpu_caches_swap(datadist):
    from llm_datadist import Cache, MemInfo, Memtype
    dd = datadist()
    cm = dd.cache_manager
    desc = CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.DEVICE)
    dev = cm.allocate_blocks_cache(desc)
    assert dev.cache_id == 1
    for i, t in enumerate(dev.tensors()):
        t.copy_(torch.arange(32, dtype=torch.float).reshape(4, 8) + 100 * i)
    host = [torch.zeros(4, 8) for _ in range(2)]
    cpu = Cache.create_cpu_cache(CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST),
                                 [t.data_ptr() for t in host])
    cm.swap_blocks(dev, cpu, {3: 0, 1: 2})
    for i, t in enumerate(dev.tensors()):
        assert torch.equal(host[i][0], t[3]) and torch.equal(host[i][2], t[1])
        assert not host[i][1].any() and not host[i][3].any()
    with pytest.raises(LLMException):  # block sizes differ
        cm.swap_blocks(dev, Cache.create_cpu_cache(CacheDesc(2, [8, 4], DataType.DT_FLOAT, Placement.HOST),
                                                   [t.data_ptr() for t in host]), {0: 0})
    with pytest.raises(LLMException):  # device to device: not a swap
        cm.swap_blocks(dev, dev, {0: 1})
    regs = [torch.zeros(4, 8) for _ in range(2)]
    reg = cm.register_blocks_cache(desc, regs)
    assert reg.cache_id == 2
    cm.remap_registered_memory(MemInfo(Memtype.MEM_TYPE_DEVICE, regs[0].data_ptr() + 4, 16))
    with pytest.raises(LLMException):
        cm.remap_registered_memory([MemInfo(Memtype.MEM_TYPE_DEVICE, regs[0].data_ptr(), 10**6)])


def test_kv_cache_cpu_cache_is_checked_as_the_vendors():
    from llm_datadist import KvCache
    host = CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST)
    one = KvCache.create_cpu_cache(host, [0x1000, 0x2000])
    assert one.cache_id == -1 and one.per_device_tensor_addrs == [[0x1000, 0x2000]]
    two = KvCache.create_cpu_cache(host, [[1, 2], [3, 4]])
    assert two.per_device_tensor_addrs == [[1, 2], [3, 4]] and "num_devices = 2" in str(two)
    for bad_desc, addrs in ((CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.DEVICE), [1, 2]),  # not HOST
                            (host, []), (host, [1]), (host, [[1, 2], 3]), (host, [[1, 2], [3]])):
        with pytest.raises(LLMException) as e:
            KvCache.create_cpu_cache(bad_desc, addrs)
        assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID, addrs


def test_transfer_config_setters_check_like_the_constructor():
    from llm_datadist import TransferConfig
    cfg = TransferConfig(2, [0x10, 0x20], range(0, 1), 3)
    assert (cfg.dst_cluster_id, cfg.dst_addrs, cfg.src_layer_range, cfg.src_batch_index) == \
        (2, [0x10, 0x20], range(0, 1), 3)
    cfg.dst_addrs = (0x30, 0x40)
    assert cfg.dst_addrs == [0x30, 0x40]
    for field, bad in (("dst_cluster_id", -1), ("dst_cluster_id", 2**64), ("src_batch_index", 2**32),
                       ("dst_addrs", [-5]), ("src_layer_range", range(2, 1))):
        with pytest.raises((LLMException, TypeError, ValueError)):
            setattr(cfg, field, bad)
    with pytest.raises(TypeError):
        cfg.dst_addrs = 7
    assert (cfg.dst_cluster_id, cfg.dst_addrs, cfg.src_batch_index) == (2, [0x30, 0x40], 3)  # nothing changed


def test_a_cache_key_names_a_request_or_a_prefix_exactly(datadist):
    from llm_datadist import CacheManager
    dd = datadist(role=LLMRole.DECODER)
    cm = dd.cache_manager
    both = CacheKey(1, req_id=5, prefix_id=7)
    neither = CacheKey(1, req_id=2**64 - 1)
    CacheManager.check_cache_key(CacheKey(1, req_id=5))
    CacheManager.check_cache_key(CacheKey(1, req_id=2**64 - 1, prefix_id=7))
    dst = cm.allocate_cache(CacheDesc(2, [1, 8], DataType.DT_FLOAT, Placement.DEVICE))
    blocks = cm.allocate_blocks_cache(CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.DEVICE))
    for key in (both, neither):
        for call in (lambda: CacheManager.check_cache_key(key), lambda: cm.pull_cache(key, dst),
                     lambda: cm.pull_blocks(key, blocks, [], [0])):
            with pytest.raises(LLMException) as e:
                call()
            assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID
            assert "req id" in str(e.value)
