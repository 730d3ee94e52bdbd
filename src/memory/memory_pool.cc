#include "memory/memory_pool.h"

#include <cstring>
#include <iterator>

#include <nlohmann/json.hpp>

#include "llm_datadist/llm_types.h"

namespace lldd {

class MemoryPool::Chunk : public Allocation {
 public:
  Chunk(std::shared_ptr<MemoryPool> pool, uint64_t offset, uint64_t size)
      : pool_(std::move(pool)), offset_(offset), size_(size) {
    set_id(pool_->backing_->id());
  }
  ~Chunk() override { pool_->Release(offset_, size_); }
  uint8_t* data() const override { return pool_->backing_->data() + offset_; }
  uint64_t size() const override { return size_; }
  MemoryKind kind() const override { return pool_->backing_->kind(); }
  int shareable_fd() const override { return pool_->backing_->shareable_fd(); }
  const std::shared_ptr<Allocation>& backing() const { return pool_->backing_; }
  uint64_t offset() const { return offset_; }

 private:
  std::shared_ptr<MemoryPool> pool_;  // the pool outlives its chunks
  uint64_t offset_;
  uint64_t size_;
};

Result ParseMemoryPoolConfig(const char* key, const std::string& json, MemoryPoolConfig* out) {
  auto invalid = [&](const std::string& why) { return Result::ParamInvalid(Msg("option ", key, "='", json, "': ", why)); };
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid("not a JSON object");
  if (!j.contains("memory_size") || !j["memory_size"].is_number_unsigned() || j["memory_size"].get<uint64_t>() == 0)
    return invalid("memory_size must be a positive integer (bytes)");
  MemoryPoolConfig c;
  c.memory_size = j["memory_size"].get<uint64_t>();
  if (c.memory_size > (1ULL << 46)) return invalid("memory_size is larger than 64 TiB");
  if (j.contains("page_shift")) {
    if (!j["page_shift"].is_number_unsigned() || j["page_shift"].get<uint64_t>() < 10 ||
        j["page_shift"].get<uint64_t>() >= 31)
      return invalid("page_shift must be an integer in [10, 31)");
    c.page_shift = j["page_shift"].get<uint32_t>();
  }
  *out = c;
  return Result::Ok();
}

MemoryPool::MemoryPool(std::shared_ptr<Allocation> backing, const MemoryPoolConfig& config)
    : backing_(std::move(backing)), page_(uint64_t{1} << config.page_shift),
      // Only whole pages are handed out.
      capacity_(config.memory_size / page_ * page_) {
  if (capacity_ > 0) free_[0] = capacity_;
}

uint64_t MemoryPool::free_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const auto& [offset, size] : free_) n += size;
  return n;
}

Result MemoryPool::Allocate(uint64_t bytes, bool device, std::shared_ptr<Allocation>* out) {
  const auto code = device ? llm_datadist::LLM_DEVICE_OUT_OF_MEMORY : llm_datadist::LLM_OUT_OF_MEMORY;
  if (bytes == 0 || bytes > capacity_)
    return Result(code, Msg(bytes, " bytes do not fit a memory pool of ", capacity_, " bytes"));
  const uint64_t need = (bytes + page_ - 1) / page_ * page_;
  uint64_t offset = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.begin();
    while (it != free_.end() && it->second < need) ++it;
    if (it == free_.end()) {
      uint64_t free = 0;
      for (const auto& [o, s] : free_) free += s;
      return Result(code, Msg("memory pool exhausted: ", need, " bytes wanted, ", free, " of ", capacity_,
                              " bytes free (none contiguous enough)"));
    }
    offset = it->first;
    const uint64_t rest = it->second - need;
    free_.erase(it);
    if (rest > 0) free_[offset + need] = rest;
  }
  auto chunk = std::make_shared<Chunk>(shared_from_this(), offset, need);
  // As unpooled AllocateCache memory: host chunks start zeroed (GPU memory
  // is not the CPU's to touch).
  if (chunk->kind() != kDeviceMemory) std::memset(chunk->data(), 0, need);
  *out = std::move(chunk);
  return Result::Ok();
}

void MemoryPool::Release(uint64_t offset, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  free_[offset] = size;
}

std::shared_ptr<Allocation> SharedBacking(const std::shared_ptr<Allocation>& memory, uint64_t* offset) {
  *offset = 0;
  if (auto* chunk = dynamic_cast<MemoryPool::Chunk*>(memory.get())) {
    *offset = chunk->offset();
    return chunk->backing();
  }
  return memory;
}

}  // namespace lldd
