// Fuzz target: the transfer planner (MapTensors, AllTensors, PlanBlocks,
// PlanRow) on two cache layouts, layer ranges, block lists, batch indexes,
// offsets and sizes all taken from the input.
//
// Whatever the planner accepts must stay inside both caches: every range's
// tensor index below num_tensors and offset + length within tensor_bytes,
// no empty range. Block plans are also checked against a simple model
// (block i of src to block i of dst, for every tensor pair, in order), so a
// wrong merge of neighbouring blocks is caught too. Any violation aborts.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "engine/cache_layout.h"
#include "engine/transfer_planner.h"

namespace {

using namespace lldd;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "fuzz_planner: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Fail(what);
}

// Mostly small values (where the interesting geometry is), sometimes any
// value at all (where the overflows are).
uint64_t SmallOrAny(FuzzedDataProvider& p, uint64_t small_max) {
  return p.ConsumeBool() ? p.ConsumeIntegral<uint64_t>() : p.ConsumeIntegralInRange<uint64_t>(0, small_max);
}

int64_t SignedSmallOrAny(FuzzedDataProvider& p, int64_t lo, int64_t hi) {
  return p.ConsumeBool() ? p.ConsumeIntegral<int64_t>() : p.ConsumeIntegralInRange<int64_t>(lo, hi);
}

bool MakeLayout(FuzzedDataProvider& p, CacheLayout* layout) {
  static constexpr int32_t kTypes[] = {
      ge::DT_INT32, ge::DT_FLOAT16, ge::DT_INT8, ge::DT_INT64, ge::DT_COMPLEX128, ge::DT_INT4,
      ge::DT_UINT1, ge::DT_FLOAT6_E3M2, ge::DT_INT2, ge::DT_STRING, -1, ge::DT_MAX,
  };
  const uint32_t num_tensors = p.ConsumeBool() ? p.ConsumeIntegral<uint32_t>() : p.ConsumeIntegralInRange<uint32_t>(0, 12);
  const int32_t data_type = p.PickValueInArray(kTypes);
  std::vector<int64_t> shape(p.ConsumeIntegralInRange<size_t>(0, 4));
  for (int64_t& d : shape) d = SignedSmallOrAny(p, -1, 16);
  if (!ComputeLayout(num_tensors, data_type, shape, layout).ok()) return false;
  // The layout's own consistency, which the planner relies on.
  Check(layout->num_tensors >= 1 && layout->rows >= 1 && layout->row_bytes >= 1, "degenerate layout");
  Check(layout->row_bytes * layout->rows == layout->tensor_bytes, "layout rows do not fill the tensor");
  return true;
}

void CheckInside(const CacheLayout& l, uint32_t tensor, uint64_t offset, uint64_t length, const char* side) {
  if (tensor >= l.num_tensors || offset > l.tensor_bytes || length > l.tensor_bytes - offset) {
    std::fprintf(stderr, "%s range tensor %u [%llu, +%llu) outside %u tensors of %llu bytes\n", side, tensor,
                 static_cast<unsigned long long>(offset), static_cast<unsigned long long>(length), l.num_tensors,
                 static_cast<unsigned long long>(l.tensor_bytes));
    Fail("planned range outside its cache");
  }
}

void CheckRanges(const CacheLayout& src, const CacheLayout& dst, const std::vector<CopyRange>& ranges) {
  for (const CopyRange& c : ranges) {
    Check(c.length > 0, "planned an empty range");
    CheckInside(src, c.src_tensor, c.src_offset, c.length, "source");
    CheckInside(dst, c.dst_tensor, c.dst_offset, c.length, "destination");
  }
}

void CheckPairs(const CacheLayout& src, const CacheLayout& dst, const std::vector<std::pair<uint32_t, uint32_t>>& pairs) {
  for (const auto& [s, d] : pairs) Check(s < src.num_tensors && d < dst.num_tensors, "tensor pair out of range");
}

// Expands merged ranges back into single blocks and compares them with the
// request, pair by pair, block by block.
void CheckBlockPlan(const CacheLayout& src, const std::vector<uint64_t>& src_blocks,
                    const std::vector<uint64_t>& dst_blocks, const std::vector<std::pair<uint32_t, uint32_t>>& pairs,
                    const std::vector<CopyRange>& ranges) {
  const uint64_t row = src.row_bytes;
  size_t r = 0;
  for (const auto& [st, dt] : pairs) {
    size_t i = 0;
    while (i < src_blocks.size()) {
      Check(r < ranges.size(), "block plan too short");
      const CopyRange& c = ranges[r++];
      Check(c.src_tensor == st && c.dst_tensor == dt, "block plan pairs the wrong tensors");
      Check(c.length % row == 0 && c.src_offset % row == 0 && c.dst_offset % row == 0, "block plan not block-aligned");
      for (uint64_t k = 0; k < c.length / row; ++k, ++i) {
        Check(i < src_blocks.size(), "block plan moves more blocks than asked");
        Check(c.src_offset / row + k == src_blocks[i] && c.dst_offset / row + k == dst_blocks[i],
              "block plan moves the wrong block");
      }
    }
  }
  Check(r == ranges.size(), "block plan too long");
}

std::vector<uint64_t> Blocks(FuzzedDataProvider& p, size_t n) {
  std::vector<uint64_t> v(n);
  for (uint64_t& b : v) {
    switch (p.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: b = p.ConsumeIntegralInRange<uint64_t>(0, 40); break;
      case 1: b = UINT64_MAX - p.ConsumeIntegralInRange<uint64_t>(0, 3); break;
      case 2: b = p.ConsumeIntegral<uint64_t>(); break;
      default: b = (&b == v.data()) ? 0 : *(&b - 1) + 1; break;  // a neighbour: exercises merging
    }
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  CacheLayout src;
  CacheLayout dst;
  if (!MakeLayout(p, &src) || !MakeLayout(p, &dst)) return 0;

  std::vector<std::pair<uint32_t, uint32_t>> pairs;
  if (p.ConsumeBool()) {
    Result r;
    pairs = AllTensors(src, dst, &r);
    if (!r.ok()) return 0;
    Check(src.num_tensors == dst.num_tensors && pairs.size() == src.num_tensors, "AllTensors accepted a mismatch");
  } else {
    llm_datadist::KvCacheExtParam ext;
    ext.tensor_num_per_layer = p.ConsumeIntegral<uint8_t>();
    ext.src_layer_range.first = static_cast<int32_t>(SignedSmallOrAny(p, -2, 12));
    ext.src_layer_range.second = static_cast<int32_t>(SignedSmallOrAny(p, -2, 12));
    ext.dst_layer_range.first = static_cast<int32_t>(SignedSmallOrAny(p, -2, 12));
    ext.dst_layer_range.second = static_cast<int32_t>(SignedSmallOrAny(p, -2, 12));
    if (!MapTensors(ext, src, dst, &pairs).ok()) return 0;
    Check(!pairs.empty(), "MapTensors produced no pairs");
  }
  CheckPairs(src, dst, pairs);

  std::vector<CopyRange> ranges;
  if (p.ConsumeBool()) {
    const size_t n = p.ConsumeIntegralInRange<size_t>(0, 16);
    const size_t m = p.ConsumeBool() ? n : p.ConsumeIntegralInRange<size_t>(0, 16);
    const std::vector<uint64_t> src_blocks = Blocks(p, n);
    const std::vector<uint64_t> dst_blocks = Blocks(p, m);
    if (!PlanBlocks(src, dst, src_blocks, dst_blocks, pairs, &ranges).ok()) return 0;
    Check(src.row_bytes == dst.row_bytes, "PlanBlocks accepted blocks of different sizes");
    CheckRanges(src, dst, ranges);
    CheckBlockPlan(src, src_blocks, dst_blocks, pairs, ranges);
  } else {
    const uint64_t src_row = SmallOrAny(p, 20);
    const uint64_t dst_row = SmallOrAny(p, 20);
    const uint64_t offset = SmallOrAny(p, 600);
    const int64_t bytes = SignedSmallOrAny(p, -2, 600);
    if (!PlanRow(src, dst, src_row, dst_row, offset, bytes, pairs, &ranges).ok()) return 0;
    Check(ranges.size() == pairs.size(), "PlanRow: one range per tensor pair");
    CheckRanges(src, dst, ranges);
    for (const CopyRange& c : ranges) {
      Check(c.src_offset == src_row * src.row_bytes + offset && c.dst_offset == dst_row * dst.row_bytes + offset,
            "PlanRow: wrong offsets");
      Check(bytes == -1 ? c.length == src.row_bytes - offset : c.length == static_cast<uint64_t>(bytes),
            "PlanRow: wrong length");
      // A row transfer stays within its row.
      Check(offset + c.length <= src.row_bytes && offset + c.length <= dst.row_bytes, "PlanRow: crosses a row");
    }
  }
  return 0;
}
