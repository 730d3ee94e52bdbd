// Types the original API borrows from Ascend's "ge" namespace.
//
// Programs written against the vendor's header use these both qualified
// (ge::Status, ge::DT_BF16) and unqualified inside llm_datadist, so both
// spellings exist. Numeric values of DataType are part of the ABI.
//
// Thread safety: AscendString is a value type; distinct objects may be used
// from distinct threads, a shared object only for reading.
#ifndef LLM_DATADIST_GE_TYPES_H_
#define LLM_DATADIST_GE_TYPES_H_

#include <cstdint>
#include <cstring>
#include <string>

namespace ge {

using Status = uint32_t;

class AscendString {
 public:
  AscendString() = default;
  AscendString(const char* name) : value_(name == nullptr ? "" : name) {}  // NOLINT: implicit by design
  AscendString(const char* name, size_t length) : value_(name == nullptr ? "" : std::string(name, length)) {}

  const char* GetString() const { return value_.c_str(); }
  const char* c_str() const { return value_.c_str(); }
  size_t GetLength() const { return value_.size(); }

  bool operator<(const AscendString& other) const { return value_ < other.value_; }
  bool operator>(const AscendString& other) const { return value_ > other.value_; }
  bool operator<=(const AscendString& other) const { return value_ <= other.value_; }
  bool operator>=(const AscendString& other) const { return value_ >= other.value_; }
  bool operator==(const AscendString& other) const { return value_ == other.value_; }
  bool operator!=(const AscendString& other) const { return value_ != other.value_; }

 private:
  std::string value_;
};

enum DataType : int32_t {
  DT_FLOAT = 0,
  DT_FLOAT16 = 1,
  DT_INT8 = 2,
  DT_INT32 = 3,
  DT_UINT8 = 4,
  DT_INT16 = 6,
  DT_UINT16 = 7,
  DT_UINT32 = 8,
  DT_INT64 = 9,
  DT_UINT64 = 10,
  DT_DOUBLE = 11,
  DT_BOOL = 12,
  DT_STRING = 13,
  DT_DUAL_SUB_INT8 = 14,
  DT_DUAL_SUB_UINT8 = 15,
  DT_COMPLEX64 = 16,
  DT_COMPLEX128 = 17,
  DT_QINT8 = 18,
  DT_QINT16 = 19,
  DT_QINT32 = 20,
  DT_QUINT8 = 21,
  DT_QUINT16 = 22,
  DT_RESOURCE = 23,
  DT_STRING_REF = 24,
  DT_DUAL = 25,
  DT_VARIANT = 26,
  DT_BF16 = 27,
  DT_UNDEFINED = 28,
  DT_INT4 = 29,
  DT_UINT1 = 30,
  DT_INT2 = 31,
  DT_UINT2 = 32,
  DT_COMPLEX32 = 33,
  DT_HIFLOAT8 = 34,
  DT_FLOAT8_E5M2 = 35,
  DT_FLOAT8_E4M3FN = 36,
  DT_FLOAT8_E8M0 = 37,
  DT_FLOAT6_E3M2 = 38,
  DT_FLOAT6_E2M3 = 39,
  DT_FLOAT4_E2M1 = 40,
  DT_FLOAT4_E1M2 = 41,
  DT_MAX
};

}  // namespace ge

#endif  // LLM_DATADIST_GE_TYPES_H_
