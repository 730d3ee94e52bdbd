"""HIXL for Python: the vendor's `hixl` module on llm-datadist.

One-sided READ/WRITE between memory that engines registered, addressed by
raw addresses (ints: a ctypes buffer's address, a tensor's data_ptr()).
Statuses are ints (hixl.SUCCESS, ...); calls with an output return
(status, output). The native part is hixl/hixl.<abi>.so, as in the vendor's
wheel, so `from hixl.hixl import Hixl` works too.

    engine = hixl.Hixl()
    engine.initialize("127.0.0.1:26000", {hixl.OPTION_AUTO_CONNECT: "1"})
    ret, handle = engine.register_mem(hixl.MemDesc(addr, size), hixl.MEM_HOST)
    ret = engine.transfer_sync("127.0.0.1:26001", hixl.READ,
                               [hixl.TransferOpDesc(addr, remote_addr, size)])
"""
from hixl.hixl import (
    ALREADY_CONNECTED,
    AUTO_CONNECT,
    CLIENT_SERVER_COMM,
    CONNECT_FAILED,
    CONNECT_PENDING,
    CONNECTED,
    CONNECTING,
    DISCONNECT_PENDING,
    DISCONNECTING,
    FAILED,
    FEATURE_NOT_SUPPORTED,
    FEATURE_SUPPORTED,
    MEM_DEVICE,
    MEM_HOST,
    NOT_CONNECT,
    NOT_CONNECTED,
    NOTIFY_FAILED,
    OPTION_AUTO_CONNECT,
    OPTION_BUFFER_POOL,
    OPTION_ENABLE_USE_FABRIC_MEM,
    OPTION_GLOBAL_RESOURCE_CONFIG,
    OPTION_LOCAL_COMM_RES,
    OPTION_RDMA_SERVICE_LEVEL,
    OPTION_RDMA_TRAFFIC_CLASS,
    PARAM_INVALID,
    READ,
    RESOURCE_EXHAUSTED,
    SUCCESS,
    TIMEOUT,
    UNSUPPORTED,
    WRITE,
    AsyncConnectStatus,
    FeatureType,
    GetTransferStatusArgs,
    Hixl,
    MemDesc,
    MemType,
    NotifyDesc,
    TransferArgs,
    TransferOp,
    TransferOpDesc,
    TransferResult,
    TransferStatus,
    get_capability,
)

__all__ = [
    # statuses
    "SUCCESS", "PARAM_INVALID", "TIMEOUT", "NOT_CONNECTED", "ALREADY_CONNECTED", "NOTIFY_FAILED",
    "UNSUPPORTED", "FAILED", "RESOURCE_EXHAUSTED",
    # initialize() option keys
    "OPTION_ENABLE_USE_FABRIC_MEM", "OPTION_RDMA_TRAFFIC_CLASS", "OPTION_RDMA_SERVICE_LEVEL",
    "OPTION_BUFFER_POOL", "OPTION_GLOBAL_RESOURCE_CONFIG", "OPTION_AUTO_CONNECT", "OPTION_LOCAL_COMM_RES",
    # get_capability() values
    "FEATURE_SUPPORTED", "FEATURE_NOT_SUPPORTED",
    # enums and their module-level values (TransferStatus has none: TIMEOUT, FAILED are statuses)
    "MemType", "MEM_DEVICE", "MEM_HOST",
    "TransferOp", "READ", "WRITE",
    "TransferStatus",
    "AsyncConnectStatus", "NOT_CONNECT", "CONNECT_PENDING", "CONNECTING", "CONNECTED", "CONNECT_FAILED",
    "DISCONNECT_PENDING", "DISCONNECTING",
    "FeatureType", "AUTO_CONNECT", "CLIENT_SERVER_COMM",
    # structs, the engine
    "MemDesc", "TransferOpDesc", "TransferArgs", "GetTransferStatusArgs", "TransferResult", "NotifyDesc",
    "Hixl", "get_capability",
]
