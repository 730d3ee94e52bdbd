// Fuzz target: the cuda_ipc describe reply (transport/cuda/cuda_describe.h),
// as a hostile peer might send it.
//
// Input: one byte n (how many ids we asked for, 0..15), then the reply.
// We ask for ids 1..n. Besides "no crash, no sanitizer report", a reply the
// decoder accepts must hold exactly one entry per id asked, each region
// inside its allocation with a descriptor index where it needs one, and
// re-encode to exactly the bytes it came from.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

#include "transport/cuda/cuda_describe.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_cuda_describe: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint64_t> asked;
  for (uint64_t id = 1; id <= (data[0] & 15U); ++id) asked.push_back(id);
  const std::vector<uint8_t> bytes(data + 1, data + size);
  lldd::CudaDescribeReply reply;
  if (!lldd::DecodeCudaDescribeReply(bytes, asked, &reply).ok()) return 0;
  Check(reply.regions.size() == asked.size(), "accepted a reply with the wrong number of entries");
  std::set<uint64_t> seen;
  for (const lldd::CudaRegionShare& e : reply.regions) {
    Check(e.id >= 1 && e.id <= asked.size(), "accepted an id that was not asked for");
    Check(seen.insert(e.id).second, "accepted an id twice");
    Check(e.share <= lldd::CudaShare::kMemfd, "accepted an unknown share");
    if (e.share == lldd::CudaShare::kNone) continue;
    Check(e.offset <= e.alloc_size && e.length <= e.alloc_size - e.offset, "accepted a region outside its allocation");
    Check(!e.key.empty() && e.key.size() <= lldd::kMaxCudaShareKeyBytes, "accepted a bad key");
    if (e.share != lldd::CudaShare::kIpc) Check(e.index >= 0, "accepted a descriptor share without a descriptor");
  }
  Check(lldd::EncodeCudaDescribeReply(reply) == bytes, "an accepted reply does not re-encode to its bytes");
  return 0;
}
