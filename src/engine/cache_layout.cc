#include "engine/cache_layout.h"

#include "control/protocol.h"

namespace lldd {

uint32_t DataTypeBits(llm_datadist::DataType type) {
  using namespace ge;
  switch (type) {
    case DT_BOOL: case DT_INT8: case DT_UINT8: case DT_QINT8: case DT_QUINT8: case DT_DUAL_SUB_INT8:
    case DT_DUAL_SUB_UINT8: case DT_HIFLOAT8: case DT_FLOAT8_E5M2: case DT_FLOAT8_E4M3FN: case DT_FLOAT8_E8M0:
      return 8;
    case DT_FLOAT16: case DT_BF16: case DT_INT16: case DT_UINT16: case DT_QINT16: case DT_QUINT16:
      return 16;
    case DT_FLOAT: case DT_INT32: case DT_UINT32: case DT_QINT32: case DT_COMPLEX32:
      return 32;
    case DT_INT64: case DT_UINT64: case DT_DOUBLE: case DT_COMPLEX64:
      return 64;
    case DT_COMPLEX128:
      return 128;
    case DT_FLOAT6_E3M2: case DT_FLOAT6_E2M3:
      return 6;
    case DT_INT4: case DT_FLOAT4_E2M1: case DT_FLOAT4_E1M2:
      return 4;
    case DT_INT2: case DT_UINT2:
      return 2;
    case DT_UINT1:
      return 1;
    default:
      return 0;  // DT_STRING, DT_STRING_REF, DT_RESOURCE, DT_DUAL, DT_VARIANT, DT_UNDEFINED
  }
}

Result ComputeLayout(uint32_t num_tensors, int32_t data_type, const std::vector<int64_t>& shape, CacheLayout* layout) {
  if (num_tensors == 0) return Result::ParamInvalid("cache_desc.num_tensors must be > 0");
  if (num_tensors > kMaxTensorsPerCache)
    return Result::ParamInvalid(Msg("cache_desc.num_tensors ", num_tensors, " exceeds the limit of ", kMaxTensorsPerCache));
  uint32_t bits = (data_type >= 0 && data_type < ge::DT_MAX) ? DataTypeBits(static_cast<ge::DataType>(data_type)) : 0;
  if (bits == 0) return Result::ParamInvalid(Msg("cache_desc.data_type ", data_type, " has no fixed element size"));
  if (shape.empty() || shape.size() > kMaxShapeRank)
    return Result::ParamInvalid(Msg("cache_desc.shape must have 1 to ", kMaxShapeRank, " dimensions"));
  unsigned __int128 row_elems = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] <= 0) return Result::ParamInvalid(Msg("cache_desc.shape[", i, "] = ", shape[i], " must be > 0"));
    if (i > 0) row_elems *= static_cast<uint64_t>(shape[i]);
    if (row_elems > (static_cast<unsigned __int128>(1) << 62))
      return Result::ParamInvalid("cache_desc.shape is too large");
  }
  unsigned __int128 row_bits = row_elems * bits;
  if (row_bits % 8 != 0)
    return Result::ParamInvalid(Msg("a row of ", static_cast<uint64_t>(row_elems), " elements of ", bits,
                                    "-bit type does not fill whole bytes"));
  unsigned __int128 row_bytes = row_bits / 8;
  // Bound the row first: row_bytes (up to 2^66) times shape[0] (up to 2^63)
  // could exceed 128 bits and wrap to a small value.
  if (row_bytes > (static_cast<unsigned __int128>(1) << 46))
    return Result::ParamInvalid("cache tensor is larger than 64 TiB");
  unsigned __int128 tensor_bytes = row_bytes * static_cast<uint64_t>(shape[0]);
  if (tensor_bytes > (static_cast<unsigned __int128>(1) << 46))
    return Result::ParamInvalid("cache tensor is larger than 64 TiB");
  layout->num_tensors = num_tensors;
  layout->rows = static_cast<uint64_t>(shape[0]);
  layout->row_bytes = static_cast<uint64_t>(row_bytes);
  layout->tensor_bytes = static_cast<uint64_t>(tensor_bytes);
  return Result::Ok();
}

Result ComputeLayout(const llm_datadist::CacheDesc& desc, CacheLayout* layout) {
  if (desc.placement != llm_datadist::CachePlacement::kHost && desc.placement != llm_datadist::CachePlacement::kDevice)
    return Result::ParamInvalid(Msg("cache_desc.placement ", static_cast<uint32_t>(desc.placement), " is unknown"));
  return ComputeLayout(desc.num_tensors, desc.data_type, desc.shape, layout);
}

}  // namespace lldd
