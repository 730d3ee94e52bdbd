#include "engine/transfer_planner.h"

namespace lldd {
namespace {

Result ResolveRange(const char* name, std::pair<int32_t, int32_t> range, uint32_t layers,
                    std::pair<uint32_t, uint32_t>* out) {
  if (range.first == -1 && range.second == -1) {
    *out = {0, layers - 1};
    return Result::Ok();
  }
  if (range.first < 0 || range.second < range.first || static_cast<uint32_t>(range.second) >= layers)
    return Result::ParamInvalid(Msg(name, " [", range.first, ", ", range.second, "] is not within the ", layers,
                                    " layers of the cache"));
  *out = {static_cast<uint32_t>(range.first), static_cast<uint32_t>(range.second)};
  return Result::Ok();
}

}  // namespace

Result MapTensors(const llm_datadist::KvCacheExtParam& ext, const CacheLayout& src, const CacheLayout& dst,
                  std::vector<std::pair<uint32_t, uint32_t>>* pairs) {
  const uint32_t per_layer = ext.tensor_num_per_layer;
  for (const CacheLayout* c : {&src, &dst}) {
    if (per_layer < 1 || per_layer > c->num_tensors || c->num_tensors % per_layer != 0)
      return Result::ParamInvalid(Msg("tensor_num_per_layer ", per_layer, " must lie in [1, ", c->num_tensors,
                                      "] and divide num_tensors ", c->num_tensors));
  }
  std::pair<uint32_t, uint32_t> s;
  std::pair<uint32_t, uint32_t> d;
  LDD_RETURN_IF_ERROR(ResolveRange("src_layer_range", ext.src_layer_range, src.num_tensors / per_layer, &s));
  LDD_RETURN_IF_ERROR(ResolveRange("dst_layer_range", ext.dst_layer_range, dst.num_tensors / per_layer, &d));
  if (s.second - s.first != d.second - d.first)
    return Result::ParamInvalid(Msg("src_layer_range covers ", s.second - s.first + 1, " layers but dst_layer_range ",
                                    d.second - d.first + 1));
  pairs->clear();
  for (uint32_t layer = 0; layer <= s.second - s.first; ++layer)
    for (uint32_t t = 0; t < per_layer; ++t)
      pairs->emplace_back((s.first + layer) * per_layer + t, (d.first + layer) * per_layer + t);
  return Result::Ok();
}

std::vector<std::pair<uint32_t, uint32_t>> AllTensors(const CacheLayout& src, const CacheLayout& dst, Result* r) {
  std::vector<std::pair<uint32_t, uint32_t>> pairs;
  if (src.num_tensors != dst.num_tensors) {
    *r = Result::ParamInvalid(Msg("source has ", src.num_tensors, " tensors, destination ", dst.num_tensors));
    return pairs;
  }
  for (uint32_t t = 0; t < src.num_tensors; ++t) pairs.emplace_back(t, t);
  *r = Result::Ok();
  return pairs;
}

Result PlanBlocks(const CacheLayout& src, const CacheLayout& dst, const std::vector<uint64_t>& src_blocks,
                  const std::vector<uint64_t>& dst_blocks, const std::vector<std::pair<uint32_t, uint32_t>>& pairs,
                  std::vector<CopyRange>* out) {
  if (src_blocks.empty() || dst_blocks.empty())
    return Result::ParamInvalid("block lists must not be empty");
  if (src_blocks.size() != dst_blocks.size())
    return Result::ParamInvalid(Msg("src_blocks has ", src_blocks.size(), " entries but dst_blocks ", dst_blocks.size()));
  if (src.row_bytes != dst.row_bytes)
    return Result::ParamInvalid(Msg("a source block is ", src.row_bytes, " bytes but a destination block ", dst.row_bytes));
  for (size_t i = 0; i < src_blocks.size(); ++i) {
    if (src_blocks[i] >= src.rows)
      return Result::ParamInvalid(Msg("src_blocks[", i, "] = ", src_blocks[i], " is not below the source's ", src.rows, " blocks"));
    if (dst_blocks[i] >= dst.rows)
      return Result::ParamInvalid(Msg("dst_blocks[", i, "] = ", dst_blocks[i], " is not below the destination's ", dst.rows, " blocks"));
  }
  // Runs of neighbouring pairs become one range per tensor.
  struct Run { uint64_t src, dst, count; };
  std::vector<Run> runs;
  for (size_t i = 0; i < src_blocks.size(); ++i) {
    if (!runs.empty()) {
      Run& r = runs.back();
      if (src_blocks[i] == r.src + r.count && dst_blocks[i] == r.dst + r.count) {
        ++r.count;
        continue;
      }
    }
    runs.push_back({src_blocks[i], dst_blocks[i], 1});
  }
  out->clear();
  out->reserve(runs.size() * pairs.size());
  for (const auto& [st, dt] : pairs)
    for (const Run& r : runs)
      out->push_back({st, r.src * src.row_bytes, dt, r.dst * dst.row_bytes, r.count * src.row_bytes});
  return Result::Ok();
}

Result PlanRow(const CacheLayout& src, const CacheLayout& dst, uint64_t src_row, uint64_t dst_row, uint64_t offset,
               int64_t size, const std::vector<std::pair<uint32_t, uint32_t>>& pairs, std::vector<CopyRange>* out) {
  if (src_row >= src.rows)
    return Result::ParamInvalid(Msg("source batch index ", src_row, " is not below the source's ", src.rows, " rows"));
  if (dst_row >= dst.rows)
    return Result::ParamInvalid(Msg("destination batch index ", dst_row, " is not below the destination's ", dst.rows, " rows"));
  if (size == 0 || size < -1) return Result::ParamInvalid(Msg("size ", size, " must be -1 or > 0"));
  uint64_t length = 0;
  if (size == -1) {
    if (src.row_bytes != dst.row_bytes)
      return Result::ParamInvalid(Msg("size -1 needs rows of equal size, but the source row is ", src.row_bytes,
                                      " bytes and the destination row ", dst.row_bytes));
    if (offset >= src.row_bytes)
      return Result::ParamInvalid(Msg("offset ", offset, " is not inside the row of ", src.row_bytes, " bytes"));
    length = src.row_bytes - offset;
  } else {
    length = static_cast<uint64_t>(size);
    uint64_t row = std::min(src.row_bytes, dst.row_bytes);
    if (offset > row || length > row - offset)
      return Result::ParamInvalid(Msg("offset ", offset, " + size ", size, " exceeds the row of ", row, " bytes"));
  }
  out->clear();
  for (const auto& [st, dt] : pairs)
    out->push_back({st, src_row * src.row_bytes + offset, dt, dst_row * dst.row_bytes + offset, length});
  return Result::Ok();
}

}  // namespace lldd
