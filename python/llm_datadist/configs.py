"""LLMRole, LLMClusterInfo and LLMConfig with the vendor's names and option keys."""
import socket
from enum import IntEnum
from typing import List, Tuple, Union

from llm_datadist.status import raise_if_false

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_INT32_MAX = 2**31 - 1


def _check_type(name, value, types):
    if not isinstance(types, (list, tuple)):
        types = [types]
    # bool is an int: refuse it where an int is asked for, as the vendor does.
    if isinstance(value, bool) and bool not in types:
        raise TypeError(f"{name} should be {'/'.join(t.__name__ for t in types)}, but got bool")
    if not isinstance(value, tuple(types)):
        raise TypeError(f"{name} should be {'/'.join(t.__name__ for t in types)}, but got {type(value).__name__}")


def _check_range(name, value, lo, hi):
    _check_type(name, value, int)
    raise_if_false(lo <= value <= hi, f"{name} should be in [{lo}, {hi}], but got {value}")


class LLMRole(IntEnum):
    PROMPT = 1
    DECODER = 2
    MIX = 3

    def __str__(self):
        return f"{self.__class__.__name__}.{self.name}"


def trans_str_ip(ip):
    """The vendor stores IPv4 addresses as little-endian ints; so do we."""
    if isinstance(ip, str):
        try:
            return int.from_bytes(socket.inet_aton(ip), byteorder="little")
        except OSError:
            raise RuntimeError(f"Can not parse ip str:{ip}")
    return ip


def int_to_ip(ip) -> str:
    if isinstance(ip, str):
        return ip
    return socket.inet_ntoa(int(ip).to_bytes(4, byteorder="little"))


class LLMClusterInfo:
    def __init__(self):
        self._remote_cluster_id = None
        self._remote_role_type = None
        self._local_ip_info_list: List[Tuple[int, int]] = []
        self._remote_ip_info_list: List[Tuple[int, int]] = []

    def _check_inputs(self, ip, port):
        _check_type("ip", ip, [str, int])
        _check_range("port", port, 0, 65535)
        return trans_str_ip(ip)

    @property
    def remote_role_type(self):
        return self._remote_role_type

    @remote_role_type.setter
    def remote_role_type(self, remote_role_type: Union[LLMRole, int]):
        _check_type("remote_role_type", remote_role_type, [LLMRole, int])
        self._remote_role_type = remote_role_type

    @property
    def remote_cluster_id(self):
        return self._remote_cluster_id

    @remote_cluster_id.setter
    def remote_cluster_id(self, remote_cluster_id):
        _check_range("remote_cluster_id", remote_cluster_id, 0, _UINT64_MAX)
        self._remote_cluster_id = remote_cluster_id

    @property
    def local_ip_info_list(self):
        return self._local_ip_info_list

    @property
    def remote_ip_info_list(self):
        return self._remote_ip_info_list

    def append_local_ip_info(self, ip: Union[str, int], port: int):
        self._local_ip_info_list.append((self._check_inputs(ip, port), port))

    def append_remote_ip_info(self, ip: Union[str, int], port: int):
        self._remote_ip_info_list.append((self._check_inputs(ip, port), port))


class LlmConfig:
    """Builds the option dict of LLMDataDist.init. generate_options() emits
    the vendor's keys exactly (ge.exec.deviceId, llm.listenIpInfo, ...);
    LLMDataDist.init maps them onto the C++ options (see README)."""

    def __init__(self):
        self._options = {}
        self._listen_ip_info = ""
        self._device_id = None
        self._sync_kv_timeout = None
        self._deploy_res_path = ""
        self._ge_options = {}
        self._enable_switch_role = False
        self._link_total_time = None
        self._link_retry_count = None
        self._cluster_info = ""
        self._output_max_size = None
        self._mem_utilization = 0.95
        self._buf_pool_cfg = ""
        self._mem_pool_cfg = ""
        self._host_mem_pool_cfg = ""
        self._enable_cache_manager = None
        self._enable_remote_cache_accessible = None
        self._rdma_traffic_class = None
        self._rdma_service_level = None
        self._local_comm_res = None
        self._transfer_backend = None
        self._global_resource_config = None
        # Our extension: discovery through etcd (llm.Directory*).
        self._directory = None
        self._directory_prefix = None
        self._directory_ttl = None

    def generate_options(self):
        return self.gen_options()

    def gen_options(self):
        if self._ge_options:
            self._options.update(self._ge_options)
        if self._device_id is not None:
            if isinstance(self._device_id, int):
                self._options["ge.exec.deviceId"] = str(self._device_id)
                self._options["ge.session_device_id"] = str(self._device_id)
            else:
                self._options["ge.session_device_id"] = str(self._device_id[0])
                self._options["ge.exec.deviceId"] = ";".join(str(d) for d in self._device_id)
        if self._sync_kv_timeout is not None:
            self._options["llm.SyncKvCacheWaitTime"] = str(self._sync_kv_timeout)
        if self._deploy_res_path:
            self._options["llm.deployResPath"] = str(self._deploy_res_path)
        if self._buf_pool_cfg:
            self._options["llm.BufPoolCfg"] = str(self._buf_pool_cfg)
        if self._mem_pool_cfg:
            self._options["llm.MemPoolConfig"] = str(self._mem_pool_cfg)
        if self._host_mem_pool_cfg:
            self._options["llm.HostMemPoolConfig"] = str(self._host_mem_pool_cfg)
        if self._enable_cache_manager is not None:
            self._options["llm.EnableCacheManager"] = "1" if self._enable_cache_manager else "0"
        if self._enable_remote_cache_accessible is not None:
            self._options["llm.EnableRemoteCacheAccessible"] = "1" if self._enable_remote_cache_accessible else "0"
        if self._listen_ip_info:
            self._options["llm.listenIpInfo"] = str(self._listen_ip_info)
        if self._link_total_time is not None:
            self._options["llm.LinkTotalTime"] = str(self._link_total_time)
        if self._link_retry_count is not None:
            self._options["llm.LinkRetryCount"] = str(self._link_retry_count)
        if self._rdma_traffic_class is not None:
            self._options["llm.RdmaTrafficClass"] = str(self._rdma_traffic_class)
        if self._rdma_service_level is not None:
            self._options["llm.RdmaServiceLevel"] = str(self._rdma_service_level)
        if self._local_comm_res is not None:
            self._options["llm.LocalCommRes"] = str(self._local_comm_res)
        if self._transfer_backend is not None:
            self._options["llm.TransferBackend"] = str(self._transfer_backend)
        if self._global_resource_config is not None:
            self._options["llm.GlobalResourceConfig"] = str(self._global_resource_config)
        if self._cluster_info:
            self._options["llm.ClusterInfo"] = str(self._cluster_info)
        if self._output_max_size is not None:
            self._options["llm.OutputMaxSize"] = str(self._output_max_size)
        if self._enable_switch_role:
            self._options["llm.EnableSwitchRole"] = "1"
        if self._mem_utilization is not None:
            self._options["llm.MemoryUtilization"] = str(self._mem_utilization)
        if self._directory is not None:
            self._options["llm.Directory"] = self._directory
        if self._directory_prefix is not None:
            self._options["llm.DirectoryPrefix"] = self._directory_prefix
        if self._directory_ttl is not None:
            self._options["llm.DirectoryTtl"] = str(self._directory_ttl)
        return self._options

    @property
    def options(self):
        return self._options

    @property
    def ge_options(self):
        return self._ge_options

    @ge_options.setter
    def ge_options(self, ge_options):
        _check_type("ge_options", ge_options, dict)
        for k, v in ge_options.items():
            _check_type("ge_options key", k, str)
            _check_type("ge_options value", v, str)
        self._ge_options = ge_options

    @property
    def device_id(self):
        return self._device_id

    @device_id.setter
    def device_id(self, device_id):
        _check_type("device_id", device_id, [list, tuple, int])
        ids = device_id if isinstance(device_id, (list, tuple)) else [device_id]
        for d in ids:
            _check_range("device_id", d, 0, _INT32_MAX)
        self._device_id = device_id

    @property
    def listen_ip_info(self):
        return self._listen_ip_info

    @listen_ip_info.setter
    def listen_ip_info(self, listen_ip_info):
        _check_type("listen_ip_info", listen_ip_info, str)
        self._listen_ip_info = listen_ip_info

    @property
    def deploy_res_path(self):
        return self._deploy_res_path

    @deploy_res_path.setter
    def deploy_res_path(self, value):
        _check_type("deploy_res_path", value, str)
        self._deploy_res_path = value

    @property
    def buf_pool_cfg(self):
        return self._buf_pool_cfg

    @buf_pool_cfg.setter
    def buf_pool_cfg(self, value):
        _check_type("buf_pool_cfg", value, str)
        self._buf_pool_cfg = value

    @property
    def output_max_size(self):
        return self._output_max_size

    @output_max_size.setter
    def output_max_size(self, value):
        _check_type("output_max_size", value, int)
        self._output_max_size = value

    @property
    def mem_utilization(self):
        return self._mem_utilization

    @mem_utilization.setter
    def mem_utilization(self, value):
        _check_type("mem_utilization", value, float)
        raise_if_false(0.0 <= value <= 1.0, f"mem_utilization must be in range [0,1], current:{value}")
        self._mem_utilization = value

    @property
    def cluster_info(self):
        return self._cluster_info

    @cluster_info.setter
    def cluster_info(self, value):
        _check_type("cluster_info", value, str)
        self._cluster_info = value

    @property
    def sync_kv_timeout(self):
        return self._sync_kv_timeout

    @sync_kv_timeout.setter
    def sync_kv_timeout(self, value):
        _check_type("sync_kv_timeout", value, [int, str])
        if isinstance(value, str):
            raise_if_false(value.isdigit(), "sync_kv_timeout must be digit.")
        raise_if_false(0 < int(value) <= _INT32_MAX, "sync_kv_timeout should be in [1, 2^31-1].")
        self._sync_kv_timeout = value

    @property
    def enable_switch_role(self):
        return self._enable_switch_role

    @enable_switch_role.setter
    def enable_switch_role(self, value: bool):
        _check_type("enable_switch_role", value, [bool])
        self._enable_switch_role = value

    @property
    def link_total_time(self):
        return 0 if self._link_total_time is None else self._link_total_time

    @link_total_time.setter
    def link_total_time(self, value: int):
        _check_range("link_total_time", value, 0, _UINT32_MAX)
        self._link_total_time = value

    @property
    def link_retry_count(self):
        return 1 if self._link_retry_count is None else self._link_retry_count

    @link_retry_count.setter
    def link_retry_count(self, value):
        _check_range("link_retry_count", value, 1, 100)
        self._link_retry_count = value

    @property
    def enable_cache_manager(self):
        return bool(self._enable_cache_manager)

    @enable_cache_manager.setter
    def enable_cache_manager(self, value: bool):
        _check_type("enable_cache_manager", value, [bool])
        self._enable_cache_manager = value

    @property
    def enable_remote_cache_accessible(self):
        return bool(self._enable_remote_cache_accessible)

    @enable_remote_cache_accessible.setter
    def enable_remote_cache_accessible(self, value: bool):
        _check_type("enable_remote_cache_accessible", value, [bool])
        self._enable_remote_cache_accessible = value

    @property
    def mem_pool_cfg(self) -> str:
        return self._mem_pool_cfg

    @mem_pool_cfg.setter
    def mem_pool_cfg(self, value: str):
        _check_type("mem_pool_cfg", value, str)
        self._mem_pool_cfg = value

    @property
    def host_mem_pool_cfg(self) -> str:
        return self._host_mem_pool_cfg

    @host_mem_pool_cfg.setter
    def host_mem_pool_cfg(self, value: str):
        _check_type("host_mem_pool_cfg", value, str)
        self._host_mem_pool_cfg = value

    @property
    def rdma_traffic_class(self):
        return self._rdma_traffic_class

    @rdma_traffic_class.setter
    def rdma_traffic_class(self, value: int):
        _check_range("rdma_traffic_class", value, 0, _UINT32_MAX)
        self._rdma_traffic_class = value

    @property
    def rdma_service_level(self):
        return self._rdma_service_level

    @rdma_service_level.setter
    def rdma_service_level(self, value: int):
        _check_range("rdma_service_level", value, 0, _UINT32_MAX)
        self._rdma_service_level = value

    @property
    def local_comm_res(self):
        return "" if self._local_comm_res is None else self._local_comm_res

    @local_comm_res.setter
    def local_comm_res(self, value):
        _check_type("local_comm_res", value, str)
        self._local_comm_res = value

    @property
    def transfer_backend(self):
        return "" if self._transfer_backend is None else self._transfer_backend

    @transfer_backend.setter
    def transfer_backend(self, value):
        _check_type("transfer_backend", value, str)
        self._transfer_backend = value

    @property
    def global_resource_config(self):
        return "" if self._global_resource_config is None else self._global_resource_config

    @global_resource_config.setter
    def global_resource_config(self, value):
        _check_type("global_resource_config", value, str)
        self._global_resource_config = value

    # --- our extension: discovery through etcd ---

    @property
    def directory(self):
        """"etcd://host:port[,host:port...]": the instance publishes itself
        there, and links (link_clusters, link) may name peers by cluster id
        alone. Not in the vendor's API."""
        return "" if self._directory is None else self._directory

    @directory.setter
    def directory(self, value):
        _check_type("directory", value, str)
        self._directory = value

    @property
    def directory_prefix(self):
        """The etcd key prefix of the entries (default "/llm_datadist/")."""
        return "" if self._directory_prefix is None else self._directory_prefix

    @directory_prefix.setter
    def directory_prefix(self, value):
        _check_type("directory_prefix", value, str)
        self._directory_prefix = value

    @property
    def directory_ttl(self):
        """Seconds a crashed instance stays listed (the lease's TTL, default 5)."""
        return 0 if self._directory_ttl is None else self._directory_ttl

    @directory_ttl.setter
    def directory_ttl(self, value):
        _check_type("directory_ttl", value, int)
        _check_range("directory_ttl", value, 1, 3600)
        self._directory_ttl = value
