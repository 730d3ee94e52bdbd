#include "transport/ucx/ucx_keys.h"

#include <algorithm>
#include <unordered_set>

#include "common/wire.h"

namespace lldd {

std::vector<uint8_t> EncodeUcxKeyReply(const std::vector<UcxKeyEntry>& entries) {
  WireWriter w;
  w.U32(static_cast<uint32_t>(entries.size()));
  for (const UcxKeyEntry& e : entries) {
    w.U64(e.id);
    w.U64(e.base);
    w.U64(e.length);
    w.U32(static_cast<uint32_t>(e.key.size()));
    w.Bytes(e.key.data(), e.key.size());
  }
  return std::move(w.buffer());
}

Result DecodeUcxKeyReply(const std::vector<uint8_t>& reply, const std::vector<uint64_t>& asked,
                         std::vector<UcxKeyEntry>* out) {
  const Result malformed = Result::LinkFailed("UCX: malformed remote-key reply from the peer");
  out->clear();
  WireReader r(reply);
  const uint32_t n = r.U32();
  if (!r.ok() || n != asked.size()) return malformed;
  std::unordered_set<uint64_t> wanted(asked.begin(), asked.end());
  if (wanted.size() != asked.size()) return malformed;  // we never ask twice
  out->reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    UcxKeyEntry e;
    e.id = r.U64();
    e.base = r.U64();
    e.length = r.U64();
    const uint32_t klen = r.U32();
    if (!r.ok() || klen == 0 || klen > kMaxUcxKeyBytes || klen > r.left() || wanted.erase(e.id) == 0 ||
        e.base + e.length < e.base)
      return malformed;
    e.key.resize(klen);
    for (uint32_t b = 0; b < klen; ++b) e.key[b] = r.U8();
    out->push_back(std::move(e));
  }
  if (!r.done()) return malformed;
  return Result::Ok();
}

}  // namespace lldd
