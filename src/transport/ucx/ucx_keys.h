// The remote-key reply of the UCX transport (ucx_endpoint.h): what a peer
// answers when asked for the keys of some of its regions. It comes from
// the peer, so it is decoded as hostile bytes; UCX itself is not needed
// here (the fuzzers build without it).
#ifndef LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_KEYS_H_
#define LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_KEYS_H_

#include <cstdint>
#include <vector>

#include "common/result.h"

namespace lldd {

// A packed rkey is a few hundred bytes at most; more is malformed.
constexpr uint32_t kMaxUcxKeyBytes = 1U << 16;

struct UcxKeyEntry {
  uint64_t id = 0;
  uint64_t base = 0;    // the region's address in the peer
  uint64_t length = 0;  // its size: base + length does not wrap
  std::vector<uint8_t> key;  // packed rkey, 1..kMaxUcxKeyBytes bytes
};

// u32 count, then per entry: u64 id, u64 base, u64 length, u32 key bytes,
// the key.
std::vector<uint8_t> EncodeUcxKeyReply(const std::vector<UcxKeyEntry>& entries);

// Accepts only a reply with exactly one entry per id asked for (in any
// order, none twice, none unasked), each well-formed, and nothing after;
// anything else is LLM_LINK_FAILED ("malformed remote-key reply").
Result DecodeUcxKeyReply(const std::vector<uint8_t>& reply, const std::vector<uint64_t>& asked,
                         std::vector<UcxKeyEntry>* out);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_UCX_UCX_KEYS_H_
