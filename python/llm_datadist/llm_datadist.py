"""LLMDataDist: the vendor's entry class over the C++ LlmDataDist."""
import atexit
import json
import logging
import os
import threading
import time
from typing import Dict, List, Optional, Tuple, Union

from llm_datadist import _llm_datadist as _native
from llm_datadist.cache_manager import CacheManager
from llm_datadist.configs import LLMClusterInfo, LLMRole, int_to_ip
from llm_datadist.llm_types import RegisterMemStatus
from llm_datadist.status import (LLMException, LLMStatusCode, code_2_status, handle_llm_status, raise_if_false,
                                 raise_if_true)

__all__ = ["LLMDataDist"]
_log = logging.getLogger("llm_datadist")
_MAX_CLUSTER_NAME = 128
_MAX_NODE_NUM = 4
_UINT64_MAX = 2**64 - 1
# Where a rank listens when the rank table gives its device_ip but no
# device_port (ours; the vendor's HCCL picks its own). The environment
# variable LLM_DATADIST_DEVICE_PORT overrides it.
DEFAULT_DEVICE_PORT = 16666


def _default_device_port():
    v = os.environ.get("LLM_DATADIST_DEVICE_PORT")
    return int(v) if v else DEFAULT_DEVICE_PORT
# How long link() keeps trying (ms) unless llm.LinkTotalTime says otherwise.
DEFAULT_LINK_TOTAL_TIME_MS = 60000

# Vendor option keys and what init does with them. Keys passed to the C++
# engine under another name:
_RENAMED = {"llm.listenIpInfo": "llm.ListenIpInfo"}
# Keys the vendor's engine reads that have no C++ counterpart here: consumed
# by this module (cache-manager mode, link timing) or meaningless on host
# memory (RDMA tuning, graph-engine settings). Not passed on. (The memory
# pools, llm.MemPoolConfig and llm.HostMemPoolConfig, are the engine's.)
_CONSUMED = {
    "ge.exec.deviceId", "ge.session_device_id", "ge.exec.rankId", "ge.resourceConfigPath", "ge.flowGraphMemMaxSize",
    "llm.EnableCacheManager", "llm.EnableRemoteCacheAccessible", "llm.MemoryUtilization", "llm.LinkTotalTime",
    "llm.LinkRetryCount", "llm.RdmaTrafficClass",
    "llm.RdmaServiceLevel", "llm.GlobalResourceConfig", "llm.deployResPath", "llm.ClusterInfo",
    "llm.OutputMaxSize", "llm.Role", "llm.ListenIp", "llm.ListenPort",
}


def to_engine_options(options: Dict[str, str]) -> Dict[str, str]:
    """Maps the vendor's option dict (LLMConfig.generate_options()) onto the
    C++ engine's: ge.exec.deviceId -> llm.DeviceId (the first id of "0;1"),
    llm.listenIpInfo -> llm.ListenIpInfo; _CONSUMED keys are dropped; the
    rest (llm.SyncKvCacheWaitTime, llm.EnableSwitchRole, llm.LocalCommRes,
    llm.BufPoolCfg, llm.TransferBackend and our own llm.* keys) pass as is."""
    out = {}
    for k, v in options.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise LLMException(f"option {k!r} must map str to str", status_code=LLMStatusCode.LLM_PARAM_INVALID)
        if k in _CONSUMED:
            continue
        out[_RENAMED.get(k, k)] = v
    if "llm.DeviceId" not in out:
        dev = options.get("ge.exec.deviceId", options.get("ge.session_device_id"))
        if dev is not None:
            out["llm.DeviceId"] = dev.split(";")[0]
    return out


def _parse_rank_table(rank_table: str, resolve_by_id=False) -> Dict[int, Tuple[Optional[str], Optional[int]]]:
    """rank_id -> (device_ip, device_port or None) from the vendor's rank table.
    With resolve_by_id (the instance has llm.Directory) an entry may omit its
    address: (None, port); that rank is then found by its cluster id."""
    try:
        table = json.loads(rank_table)
        ranks = {}
        for server in table["server_list"]:
            for dev in server.get("device", []):
                rank = int(dev["rank_id"])
                ip = dev.get("device_ip") or server.get("host_ip")
                port = dev.get("device_port")
                raise_if_false(ip or resolve_by_id, f"rank {rank} has no device_ip")
                ranks[rank] = (str(ip) if ip else None, int(port) if port not in (None, "") else None)
        return ranks
    except LLMException:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise LLMException(f"invalid rank_table: {e}", status_code=LLMStatusCode.LLM_PARAM_INVALID)


class _Comm:
    """One link() call: the peers this side connects to (lower ranks listen)
    and the peers that connect to it."""

    def __init__(self, comm_id, name, connect_to, accept_from, deadline):
        self.comm_id = comm_id
        self.name = name
        self.connect_to = connect_to      # {cluster_id: (ip, port), or None: by cluster id}
        self.accept_from = accept_from    # [cluster_id]
        self.deadline = deadline
        self.linked = set()
        self.failed = None
        self.cancel = threading.Event()
        self.thread = None


class LLMDataDist:
    llm_engine_instance = None

    def __init__(self, role: LLMRole, cluster_id: int):
        if not isinstance(role, LLMRole):
            raise TypeError("role should be LLMRole")
        if isinstance(cluster_id, bool) or not isinstance(cluster_id, int) or not 0 <= cluster_id <= _UINT64_MAX:
            raise TypeError("cluster_id should be an int in [0, 2^64-1]")
        self._role = role
        self._cluster_id = cluster_id
        self._engine = None
        self._cache_manager = None
        self._is_initialized = False
        self._options: Dict[str, str] = {}
        self._enable_cache_mgr = False
        self._comms: Dict[int, _Comm] = {}
        self._next_comm_id = 1
        self._link_lock = threading.Lock()

    # --- life cycle ---

    def init(self, options: Dict[str, str]) -> None:
        if self._is_initialized:
            return
        raise_if_false(LLMDataDist.llm_engine_instance is None, "Cannot init multiple LLMDataDists",
                       status_code=LLMStatusCode.LLM_FAILED)
        if not isinstance(options, dict):
            raise TypeError("options should be dict")
        self._options = dict(options)
        self._enable_cache_mgr = options.get("llm.EnableCacheManager") == "1" or (
            "llm.LocalCommRes" in options and "llm.EnableCacheManager" not in options)
        engine = _native.Engine(self._cluster_id, int(self._role))
        st = engine.initialize(to_engine_options(options))
        handle_llm_status(st, "[LLMDataDist.init]", "Failed to initialize llm datadist")
        try:
            self._cache_manager = CacheManager(engine, options)
        except Exception:
            engine.finalize()
            raise
        self._engine = engine
        LLMDataDist.llm_engine_instance = self
        self._is_initialized = True

    def finalize(self) -> None:
        """Releases every link, cache and thread (idempotent; also run at
        interpreter exit for an instance the application never finalized)."""
        if not self._is_initialized:
            return
        for comm in list(self._comms.values()):
            comm.cancel.set()
        for comm in list(self._comms.values()):
            if comm.thread is not None:
                comm.thread.join(timeout=5)
        self._comms.clear()
        self._cache_manager._finalized()
        self._engine.finalize()
        self._is_initialized = False
        if LLMDataDist.llm_engine_instance is self:
            LLMDataDist.llm_engine_instance = None

    def _check_is_inited(self):
        if not self._is_initialized:
            raise RuntimeError("llm datadist is not initialized")

    @property
    def cluster_id(self):
        return self._cluster_id

    @property
    def cache_manager(self) -> CacheManager:
        """The cache operations. (The vendor's needs llm.EnableCacheManager;
        ours has no other manager, so it is there in both modes.)"""
        self._check_is_inited()
        return self._cache_manager

    @property
    def kv_cache_manager(self):
        # The vendor's open package has no v1 manager to follow: its
        # v2/llm_datadist.py imports KvCacheManager from a separate
        # llm_datadist_v1 package that hicann/hixl does not contain.
        raise LLMException("kv_cache_manager (the vendor's closed v1 API) is not provided; use cache_manager",
                           status_code=LLMStatusCode.LLM_FEATURE_NOT_ENABLED)

    def listen_port(self) -> int:
        """(ours) The port this instance listens on; 0 for a client."""
        self._check_is_inited()
        return self._engine.listen_port()

    def link_transport(self, remote_cluster_id: int) -> str:
        """(ours) The data path of a link ("tcp", "shm"); "" if not linked."""
        self._check_is_inited()
        return self._engine.link_transport(remote_cluster_id)

    def get_stats(self) -> dict:
        """(ours) LlmDataDist::GetStats() as a dict: "transports" and "peers"
        (by name / cluster id: pull_/push_ bytes, calls, latency histograms,
        failures by status code, in_flight), link counts and admission
        counters. See the README's operator section."""
        self._check_is_inited()
        return self._engine.stats()

    # --- link_clusters mode ---

    @staticmethod
    def _clusters(clusters, with_local=True):
        if not isinstance(clusters, (list, tuple)) or not all(isinstance(c, LLMClusterInfo) for c in clusters):
            raise TypeError("clusters should be a list or tuple of LLMClusterInfo")
        out = []
        for c in clusters:
            raise_if_true(c.remote_cluster_id is None, "remote_cluster_id is not set")
            local = [(int_to_ip(ip), port) for ip, port in c.local_ip_info_list] if with_local else []
            remote = [(int_to_ip(ip), port) for ip, port in c.remote_ip_info_list]
            out.append((c.remote_cluster_id, local, remote))
        return out

    def link_clusters(self, clusters: Union[List[LLMClusterInfo], Tuple[LLMClusterInfo]], timeout=3000):
        """Links to servers; returns (status, [status per cluster])."""
        self._check_is_inited()
        raise_if_false(isinstance(timeout, int) and 0 < timeout < 2**31, "Param timeout should be greater than 0.")
        # Only the remote address says where the server is; the vendor's
        # local_ip_info names the local device NIC, which a host has not.
        ret, rets = self._engine.link(self._clusters(clusters, with_local=False), timeout)
        for c in clusters:
            self._cache_manager._directory.forget(c.remote_cluster_id)
        return code_2_status(ret), [code_2_status(r) for r in rets]

    def unlink_clusters(self, clusters: Union[List[LLMClusterInfo], Tuple[LLMClusterInfo]], timeout=3000,
                        force=False):
        self._check_is_inited()
        raise_if_false(isinstance(timeout, int) and 0 < timeout < 2**31, "Param timeout should be greater than 0.")
        if not isinstance(force, bool):
            raise TypeError("force should be bool")
        ret, rets = self._engine.unlink(self._clusters(clusters, with_local=False), timeout, force)
        for c in clusters:
            self._cache_manager._directory.forget(c.remote_cluster_id)
        return code_2_status(ret), [code_2_status(r) for r in rets]

    def check_link_status(self, remote_cluster_id: int):
        self._check_is_inited()
        if not self._engine.link_transport(remote_cluster_id):
            raise LLMException(f"[check_link_status] cluster {remote_cluster_id} is not linked",
                               status_code=LLMStatusCode.LLM_NOT_YET_LINK)

    def switch_role(self, role: LLMRole, switch_options: Optional[Dict[str, str]] = None):
        """PROMPT needs llm.listenIpInfo (it listens there); DECODER stops
        listening. Only without links, as the vendor's."""
        self._check_is_inited()
        if not isinstance(role, LLMRole):
            raise TypeError("role should be LLMRole")
        if switch_options is not None and not isinstance(switch_options, dict):
            raise TypeError("switch_options should be dict")
        options = dict(switch_options or {})
        if not self._enable_cache_mgr:
            raise_if_false(self._role != role, f"role not changed, role = {role.name}")
        if role == LLMRole.PROMPT:
            raise_if_false("llm.listenIpInfo" in options or "llm.ListenIpInfo" in options,
                           'Failed to switch to Prompt, option "llm.listenIpInfo" must be specified')
        engine_options = {k: v for k, v in to_engine_options(options).items() if k != "llm.DeviceId"}
        st = self._engine.set_role(int(role), engine_options)
        handle_llm_status(st, "[switch_role]", f"Failed to switch role, role = {role}")
        self._role = role

    # --- cache-manager mode: link by rank table ---

    def _check_is_cache_mgr_mode(self, func_name):
        raise_if_false(self._enable_cache_mgr,
                       f"{func_name} is not supported when llm.EnableCacheManager is not configured.")

    def link(self, comm_name: str, cluster_rank_info: Dict[int, int], rank_table: str) -> int:
        """Links this instance with the other clusters of cluster_rank_info,
        finding each rank's address (device_ip, device_port) in rank_table.
        Of each pair the lower rank listens and the higher rank connects.
        Returns at once with a comm id; query_register_mem_status(comm_id)
        says PREPARING until every peer is linked, then OK (or FAILED after
        llm.LinkTotalTime ms, default 60 s)."""
        self._check_is_inited()
        self._check_is_cache_mgr_mode("link")
        if not isinstance(comm_name, str):
            raise TypeError("comm_name should be str")
        raise_if_true(len(comm_name) == 0, "comm_name can not be empty")
        raise_if_false(len(comm_name) < _MAX_CLUSTER_NAME, "comm_name length should be smaller than 128.")
        if not isinstance(cluster_rank_info, dict):
            raise TypeError("cluster_rank_info should be dict")
        for k, v in cluster_rank_info.items():
            if isinstance(k, bool) or not isinstance(k, int) or isinstance(v, bool) or not isinstance(v, int):
                raise TypeError("cluster_rank_info should map int to int")
        raise_if_false(len(cluster_rank_info) <= _MAX_NODE_NUM, "cluster_rank_info size can not be greater than 4.")
        if not isinstance(rank_table, str):
            raise TypeError("rank_table should be str")
        ranks = list(cluster_rank_info.values())
        raise_if_false(len(ranks) > 1, "cluster num must be bigger than 1.")
        raise_if_false(ranks == sorted(ranks), "rank in cluster_rank_info must be ordered")
        raise_if_false(len(set(ranks)) == len(ranks), "rank in cluster_rank_info can not be duplicated.")
        raise_if_false(self._cluster_id in cluster_rank_info,
                       f"this cluster ({self._cluster_id}) is not in cluster_rank_info")
        table = _parse_rank_table(rank_table, resolve_by_id=bool(self._options.get("llm.Directory")))
        for cluster, rank in cluster_rank_info.items():
            raise_if_false(rank in table, f"rank {rank} (cluster {cluster}) is not in rank_table")
        my_rank = cluster_rank_info[self._cluster_id]
        my_ip, my_port = table[my_rank]
        # A rank without an address (llm.Directory) is linked by cluster id.
        connect_to = {c: (table[r][0], table[r][1] or _default_device_port()) if table[r][0] else None
                      for c, r in cluster_rank_info.items() if r < my_rank}
        accept_from = [c for c, r in cluster_rank_info.items() if r > my_rank]
        total_ms = int(self._options.get("llm.LinkTotalTime", "0") or 0) or DEFAULT_LINK_TOTAL_TIME_MS
        with self._link_lock:
            if accept_from and self._engine.listen_port() == 0:
                # Without an address of its own in the table, the directory
                # tells peers where this rank listens: any port will do.
                listen = (f"{my_ip}:{my_port or _default_device_port()}" if my_ip
                          else f"0.0.0.0:{my_port or 0}")
                st = self._engine.set_role(int(self._role), {"llm.ListenIpInfo": listen})
                handle_llm_status(st, "[link]", f"listening on {listen} (rank {my_rank} of {comm_name})")
            comm = _Comm(self._next_comm_id, comm_name, connect_to, accept_from, time.monotonic() + total_ms / 1000)
            self._next_comm_id += 1
            self._comms[comm.comm_id] = comm
        for c in list(connect_to) + accept_from:
            self._cache_manager._directory.forget(c)
        if connect_to:
            comm.thread = threading.Thread(target=self._connect, args=(comm,), daemon=True,
                                           name=f"llm_datadist-link-{comm.comm_id}")
            comm.thread.start()
        return comm.comm_id

    def _connect(self, comm: _Comm):
        """Links to the listening peers, retrying while they are not listening
        yet, until the deadline. Runs on its own thread; the GIL is released
        inside each attempt."""
        pending = dict(comm.connect_to)
        while pending and not comm.cancel.is_set():
            left_ms = int((comm.deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                comm.failed = f"could not link to {sorted(pending)} in time: {_native.last_error_message()}"
                return
            for cluster, address in list(pending.items()):
                remote = [address] if address else []  # none: resolved by cluster id
                ret, rets = self._engine.link([(cluster, [], remote)], max(1, min(left_ms, 2000)))
                if ret in (LLMStatusCode.LLM_SUCCESS, LLMStatusCode.LLM_ALREADY_LINK):
                    comm.linked.add(cluster)
                    del pending[cluster]
            if pending:
                comm.cancel.wait(0.05)

    def query_register_mem_status(self, comm_id: int) -> RegisterMemStatus:
        self._check_is_inited()
        self._check_is_cache_mgr_mode("query_register_mem_status")
        comm = self._comms.get(comm_id)
        raise_if_true(comm is None, f"unknown comm_id {comm_id}")
        if comm.failed:
            return RegisterMemStatus.FAILED
        done = all(c in comm.linked for c in comm.connect_to) and all(
            self._engine.link_transport(c) for c in comm.accept_from)
        if done:
            return RegisterMemStatus.OK
        if time.monotonic() > comm.deadline:
            return RegisterMemStatus.FAILED
        return RegisterMemStatus.PREPARING

    def unlink(self, comm_id: int):
        """Tears down a link() comm: the connecting side unlinks both ends
        (forced, local end only, if the peer does not confirm); the listening
        side drops its end if still there."""
        self._check_is_inited()
        self._check_is_cache_mgr_mode("unlink")
        with self._link_lock:
            comm = self._comms.pop(comm_id, None)
        # As the vendor's: a comm id never linked (or unlinked already).
        raise_if_true(comm is None, f"[unlink] comm_id {comm_id} is not linked",
                      status_code=LLMStatusCode.LLM_NOT_YET_LINK)
        comm.cancel.set()
        if comm.thread is not None:
            comm.thread.join(timeout=10)
        errors = []
        for cluster, address in comm.connect_to.items():
            spec = [(cluster, [], [address] if address else [])]
            ret, _ = self._engine.unlink(spec, 3000, False)
            if ret not in (LLMStatusCode.LLM_SUCCESS, LLMStatusCode.LLM_NOT_YET_LINK):
                ret, _ = self._engine.unlink(spec, 3000, True)
                if ret not in (LLMStatusCode.LLM_SUCCESS, LLMStatusCode.LLM_NOT_YET_LINK):
                    errors.append((cluster, ret, _native.last_error_message()))
        for cluster in comm.accept_from:
            if self._engine.link_transport(cluster):
                ret, _ = self._engine.unlink([(cluster, [], [])], 3000, True)
                if ret not in (LLMStatusCode.LLM_SUCCESS, LLMStatusCode.LLM_NOT_YET_LINK):
                    errors.append((cluster, ret, _native.last_error_message()))
        for c in list(comm.connect_to) + comm.accept_from:
            self._cache_manager._directory.forget(c)
        if errors:
            cluster, ret, msg = errors[0]
            raise LLMException(f"[unlink] failed, cluster {cluster}: {msg}", status_code=code_2_status(ret))


def _shutdown_handler():
    inst = LLMDataDist.llm_engine_instance
    if inst is not None:
        try:
            inst.finalize()
        except LLMException as e:  # pragma: no cover
            _log.warning("error while finalizing llm datadist at exit: %s", e)


atexit.register(_shutdown_handler)
