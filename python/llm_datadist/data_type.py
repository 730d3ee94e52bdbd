"""DataType: the vendor's Python enum, values of ge::DataType."""
from enum import Enum


class DataType(Enum):
    DT_FLOAT = 0
    DT_FLOAT16 = 1
    DT_BF16 = 27
    DT_INT8 = 2
    DT_INT16 = 6
    DT_UINT16 = 7
    DT_UINT8 = 4
    DT_INT32 = 3
    DT_INT64 = 9
    DT_UINT32 = 8
    DT_UINT64 = 10
    DT_BOOL = 12
    DT_DOUBLE = 11
    DT_STRING = 13


# Bytes per element (DT_STRING has none: caches of it are refused).
ITEM_SIZE = {
    DataType.DT_FLOAT: 4, DataType.DT_FLOAT16: 2, DataType.DT_BF16: 2, DataType.DT_INT8: 1,
    DataType.DT_INT16: 2, DataType.DT_UINT16: 2, DataType.DT_UINT8: 1, DataType.DT_INT32: 4,
    DataType.DT_INT64: 8, DataType.DT_UINT32: 4, DataType.DT_UINT64: 8, DataType.DT_BOOL: 1,
    DataType.DT_DOUBLE: 8,
}

_NUMPY = {
    DataType.DT_FLOAT: "float32", DataType.DT_FLOAT16: "float16", DataType.DT_INT8: "int8",
    DataType.DT_INT16: "int16", DataType.DT_UINT16: "uint16", DataType.DT_UINT8: "uint8",
    DataType.DT_INT32: "int32", DataType.DT_INT64: "int64", DataType.DT_UINT32: "uint32",
    DataType.DT_UINT64: "uint64", DataType.DT_BOOL: "bool", DataType.DT_DOUBLE: "float64",
}

_TORCH = {
    DataType.DT_FLOAT: "float32", DataType.DT_FLOAT16: "float16", DataType.DT_BF16: "bfloat16",
    DataType.DT_INT8: "int8", DataType.DT_INT16: "int16", DataType.DT_UINT8: "uint8",
    DataType.DT_INT32: "int32", DataType.DT_INT64: "int64", DataType.DT_BOOL: "bool",
    DataType.DT_DOUBLE: "float64",
}


def numpy_dtype(data_type):
    """The numpy dtype of a DataType (bf16: uint16, numpy has no bfloat16)."""
    import numpy as np
    if data_type == DataType.DT_BF16:
        return np.dtype(np.uint16)
    return np.dtype(_NUMPY[data_type])


def torch_dtype(data_type):
    import torch
    name = _TORCH.get(data_type)
    if name is None:
        raise ValueError(f"{data_type} has no torch dtype")
    return getattr(torch, name)


def from_torch_dtype(dtype):
    """The DataType of a torch dtype."""
    name = str(dtype).replace("torch.", "")
    for dt, n in _TORCH.items():
        if n == name:
            return dt
    raise ValueError(f"torch dtype {dtype} has no DataType")
