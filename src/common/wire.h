// Little-endian encoding of integers and strings for the wire protocol.
//
// WireReader never reads past its buffer: every getter checks the bytes
// left and, on shortage, marks the reader failed and returns zero. Callers
// check ok() once at the end instead of after every field.
#ifndef LLM_DATADIST_SRC_COMMON_WIRE_H_
#define LLM_DATADIST_SRC_COMMON_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace lldd {

class WireWriter {
 public:
  void U8(uint8_t v) { buf_.push_back(v); }
  void U16(uint16_t v) { PutLe(v); }
  void U32(uint32_t v) { PutLe(v); }
  void U64(uint64_t v) { PutLe(v); }
  void I32(int32_t v) { PutLe(static_cast<uint32_t>(v)); }
  void I64(int64_t v) { PutLe(static_cast<uint64_t>(v)); }
  void Str(const std::string& s) {
    U32(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  void Bytes(const void* p, size_t n) {
    if (n == 0) return;
    const size_t at = Grow(n);
    std::memcpy(buf_.data() + at, p, n);
  }
  std::vector<uint8_t>& buffer() { return buf_; }
  size_t size() const { return buf_.size(); }

 private:
  // The buffer grows by resize and is then written in place: GCC 12 at -O3
  // misreads a vector grown by push_back or insert, once inlined into its
  // callers, as an overflow (-Wstringop-overflow, -Warray-bounds).
  size_t Grow(size_t n) {
    const size_t at = buf_.size();
    buf_.resize(at + n);
    return at;
  }
  template <typename T>
  void PutLe(T v) {
    const size_t at = Grow(sizeof(T));
    for (size_t i = 0; i < sizeof(T); ++i) buf_[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  std::vector<uint8_t> buf_;
};

class WireReader {
 public:
  WireReader(const uint8_t* data, size_t size) : p_(data), left_(size) {}
  explicit WireReader(const std::vector<uint8_t>& v) : WireReader(v.data(), v.size()) {}

  uint8_t U8() { return GetLe<uint8_t>(); }
  uint16_t U16() { return GetLe<uint16_t>(); }
  uint32_t U32() { return GetLe<uint32_t>(); }
  uint64_t U64() { return GetLe<uint64_t>(); }
  int32_t I32() { return static_cast<int32_t>(GetLe<uint32_t>()); }
  int64_t I64() { return static_cast<int64_t>(GetLe<uint64_t>()); }
  // Strings longer than max_len fail the reader (a hostile length cannot
  // make us allocate more than the frame holds anyway).
  std::string Str(size_t max_len = 4096) {
    uint32_t n = U32();
    if (!ok_ || n > max_len || n > left_) {
      ok_ = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    left_ -= n;
    return s;
  }
  bool ok() const { return ok_; }
  size_t left() const { return left_; }
  // True if everything was consumed and nothing failed.
  bool done() const { return ok_ && left_ == 0; }
  void Fail() { ok_ = false; }

 private:
  template <typename T>
  T GetLe() {
    if (!ok_ || left_ < sizeof(T)) {
      ok_ = false;
      return 0;
    }
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | (static_cast<T>(p_[i]) << (8 * i)));
    p_ += sizeof(T);
    left_ -= sizeof(T);
    return v;
  }
  const uint8_t* p_;
  size_t left_;
  bool ok_ = true;
};

// A request of one byte of opcode and a list of ids (region ids, say), as
// transports send their peer endpoints: op u8, count u32, ids u64 each.
inline std::vector<uint8_t> EncodeOpWithIds(uint8_t op, const std::vector<uint64_t>& ids) {
  WireWriter w;
  w.U8(op);
  w.U32(static_cast<uint32_t>(ids.size()));
  for (uint64_t id : ids) w.U64(id);
  return std::move(w.buffer());
}

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_WIRE_H_
