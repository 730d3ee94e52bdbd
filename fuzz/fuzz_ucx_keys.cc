// Fuzz target: the UCX remote-key reply (transport/ucx/ucx_keys.h), as a
// hostile peer might send it.
//
// Input: one byte n (how many ids we asked for, 0..15), then the reply.
// We ask for ids 1..n. Besides "no crash, no sanitizer report", a reply the
// decoder accepts must hold exactly one well-formed entry per id asked
// (keys 1..kMaxUcxKeyBytes bytes, ranges that do not wrap) and re-encode
// to exactly the bytes it came from.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

#include "transport/ucx/ucx_keys.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_ucx_keys: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint64_t> asked;
  for (uint64_t id = 1; id <= (data[0] & 15U); ++id) asked.push_back(id);
  const std::vector<uint8_t> reply(data + 1, data + size);
  std::vector<lldd::UcxKeyEntry> entries;
  if (!lldd::DecodeUcxKeyReply(reply, asked, &entries).ok()) return 0;
  Check(entries.size() == asked.size(), "accepted a reply with the wrong number of entries");
  std::set<uint64_t> seen;
  for (const lldd::UcxKeyEntry& e : entries) {
    Check(e.id >= 1 && e.id <= asked.size(), "accepted an id that was not asked for");
    Check(seen.insert(e.id).second, "accepted an id twice");
    Check(!e.key.empty() && e.key.size() <= lldd::kMaxUcxKeyBytes, "accepted a key of a bad size");
    Check(e.base + e.length >= e.base, "accepted a range that wraps");
  }
  Check(lldd::EncodeUcxKeyReply(entries) == reply, "an accepted reply does not re-encode to its bytes");
  return 0;
}
