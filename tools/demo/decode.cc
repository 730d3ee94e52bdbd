#include "demo/decode.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "common/pattern.h"
#include "common/stats_summary.h"
#include "common/prefault.h"
#include "common/units.h"
#include "demo/block_pool.h"
#include "demo/kv_pattern.h"
#include "demo/messages.h"
#include "demo/prefill.h"

namespace lldd_demo {
namespace {

using namespace llm_datadist;
using Clock = std::chrono::steady_clock;

// State shared by the reader (main thread) and the pulling workers.
class DecodeState {
 public:
  DecodeState(const DecodeConfig& config, lldd_tools::LineChannel& prefill, DecodeResult* result)
      : config_(config), prefill_(prefill), result_(result), pool_(config.pool_blocks, config.seed ^ 0xDEC0DE) {}

  void Enqueue(ReadyMessage m) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(m));
    cv_.notify_one();
  }
  void NoMoreWork() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  std::optional<ReadyMessage> Next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !queue_.empty() || failed_; });
    if (failed_ || queue_.empty()) return std::nullopt;
    ReadyMessage m = std::move(queue_.front());
    queue_.pop_front();
    return m;
  }
  void Fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (result_->error.empty()) result_->error = why;
    failed_ = true;
    cv_.notify_all();
  }
  bool failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_;
  }
  bool TakeBlocks(uint64_t n, std::vector<uint64_t>* blocks) {
    std::lock_guard<std::mutex> lock(mu_);
    return pool_.Take(n, blocks);
  }
  void Finished(uint32_t request, const std::vector<uint64_t>& blocks, double ms, uint64_t bytes, uint64_t calls,
                Clock::time_point start, Clock::time_point end) {
    std::lock_guard<std::mutex> lock(mu_);
    pool_.Give(blocks);
    result_->latency_ms.Add(ms);
    result_->bytes += bytes;
    result_->calls += calls;
    ++result_->verified;
    if (!first_start_ || start < *first_start_) first_start_ = start;
    if (!last_end_ || end > *last_end_) last_end_ = end;
    result_->pull_span_s = std::chrono::duration<double>(*last_end_ - *first_start_).count();
    prefill_.WriteLine("done " + std::to_string(request));
  }

 private:
  const DecodeConfig& config_;
  lldd_tools::LineChannel& prefill_;
  DecodeResult* result_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ReadyMessage> queue_;
  bool closed_ = false;
  bool failed_ = false;
  BlockPool pool_;
  std::optional<Clock::time_point> first_start_;
  std::optional<Clock::time_point> last_end_;
};

// Every byte of every block, against what prefill wrote. Returns "" or the
// first difference, named the way a person debugging it would want.
std::string Verify(const DecodeConfig& config, const Cache& pool, const Request& r, const std::vector<uint64_t>& dst,
                   const std::vector<uint64_t>& src) {
  const uint64_t bb = config.model->block_bytes();
  for (uint32_t t = 0; t < config.model->tensors(); ++t) {
    const auto* base = reinterpret_cast<const uint8_t*>(pool.tensor_addrs[t]);
    for (uint64_t j = 0; j < dst.size(); ++j) {
      size_t at = lldd_tools::FindPatternMismatch(base + dst[j] * bb, bb, KvBlockSeed(config.seed, r.id, t, j));
      if (at != bb)
        return "request " + std::to_string(r.id) + " layer " + std::to_string(t / 2) + (t % 2 ? " V" : " K") +
               " block " + std::to_string(j) + " (prefill block " + std::to_string(src[j]) + " -> decode block " +
               std::to_string(dst[j]) + ") differs at byte " + std::to_string(at);
    }
  }
  return "";
}

void Worker(const DecodeConfig& config, LlmDataDist& dd, const Cache& pool, DecodeState& state,
            lldd_tools::ProgressBar* progress) {
  while (auto m = state.Next()) {
    if (m->request >= config.requests.size() || m->blocks.size() != config.requests[m->request].blocks) {
      state.Fail("prefill announced an unexpected request: " + FormatReady(*m).substr(0, 80));
      return;
    }
    const Request& r = config.requests[m->request];
    std::vector<uint64_t> dst;
    if (!state.TakeBlocks(r.blocks, &dst)) {
      state.Fail("decode pool exhausted (a bug in the demo's sizing)");
      return;
    }
    const CacheIndex src{kPrefillClusterId, m->cache_id, 0};
    uint64_t calls = 0;
    const auto start = Clock::now();
    if (config.layerwise) {
      // As a decode engine that starts on layer 0 while later layers are
      // still in flight would: one call per layer, K and V together.
      for (uint32_t l = 0; l < config.model->layers; ++l) {
        KvCacheExtParam ext;
        ext.src_layer_range = {static_cast<int32_t>(l), static_cast<int32_t>(l)};
        ext.dst_layer_range = ext.src_layer_range;
        ext.tensor_num_per_layer = 2;
        Status st = dd.PullKvBlocks(src, pool, m->blocks, dst, ext);
        ++calls;
        if (st != LLM_SUCCESS) {
          state.Fail("PullKvBlocks of request " + std::to_string(r.id) + " layer " + std::to_string(l) +
                     " failed: " + lldd_tools::DescribeFailure(st));
          return;
        }
      }
    } else {
      Status st = dd.PullKvBlocks(src, pool, m->blocks, dst);
      ++calls;
      if (st != LLM_SUCCESS) {
        state.Fail("PullKvBlocks of request " + std::to_string(r.id) + " (" + std::to_string(r.blocks) +
                   " blocks) failed: " + lldd_tools::DescribeFailure(st));
        return;
      }
    }
    const auto end = Clock::now();
    std::string bad = Verify(config, pool, r, dst, m->blocks);
    if (!bad.empty()) {
      state.Fail("data mismatch: " + bad);
      return;
    }
    const uint64_t bytes = r.blocks * config.model->block_bytes() * config.model->tensors();
    const double ms = std::chrono::duration<double, std::milli>(end - start).count();
    state.Finished(r.id, dst, ms, bytes, calls, start, end);
    if (progress) {
      char note[64];
      std::snprintf(note, sizeof(note), "req %u: %s in %.1f ms", r.id, lldd_tools::FormatBytes(bytes).c_str(), ms);
      progress->Advance(1, note);
    }
  }
}

}  // namespace

void RunDecode(const DecodeConfig& config, lldd_tools::LineChannel& prefill, uint16_t prefill_port,
               lldd_tools::ProgressBar* progress, DecodeResult* result) {
  std::string error;
  auto dd = lldd_tools::StartInstance(kDecodeClusterId, LlmRole::kDecoder, config.instance, &error);
  if (!dd) {
    result->error = "decode: " + error;
    return;
  }
  // With a directory (--directory), prefill is found by its cluster id.
  const bool by_id = config.instance.extra.count(LlmDataDist::OPTION_DIRECTORY) != 0;
  if (!lldd_tools::LinkTo(*dd, kPrefillClusterId, by_id ? "" : "127.0.0.1", prefill_port, 5000, &error)) {
    result->error = "decode: " + error;
    return;
  }
  result->link_transport = dd->GetLinkTransport(kPrefillClusterId);
  Cache pool;
  Status st = dd->AllocateCache(config.model->PoolDesc(config.pool_blocks), pool);
  if (st != LLM_SUCCESS) {
    result->error = "decode: AllocateCache of " + std::to_string(config.pool_blocks) +
                    " blocks failed: " + lldd_tools::DescribeFailure(st);
    return;
  }

  if (config.prefault)
    result->prefault_s = lldd_tools::Prefault(pool.tensor_addrs, config.pool_blocks * config.model->block_bytes());

  DecodeState state(config, prefill, result);
  std::vector<std::thread> workers;
  for (uint32_t i = 0; i < std::max<uint32_t>(1, config.concurrency); ++i)
    workers.emplace_back([&] { Worker(config, *dd, pool, state, progress); });

  size_t announced = 0;
  while (announced < config.requests.size() && !state.failed()) {
    std::string line;
    // A timeout rather than a blocking read: a failed worker must be able
    // to stop the run while prefill waits for blocks that never come back.
    auto got = prefill.Read(&line, 100);
    if (got == lldd_tools::LineChannel::ReadResult::kTimeout) continue;
    if (got == lldd_tools::LineChannel::ReadResult::kClosed) {
      state.Fail("prefill process ended unexpectedly");
      break;
    }
    if (Verb(line) == "error") {
      state.Fail(Rest(line));
      break;
    }
    ReadyMessage m;
    if (!ParseReady(line, &m)) {
      state.Fail("unexpected message from prefill: " + line.substr(0, 80));
      break;
    }
    state.Enqueue(std::move(m));
    ++announced;
  }
  state.NoMoreWork();
  for (auto& w : workers) w.join();
  result->stats_summary = lldd_tools::StatsSummary(dd->GetStats());
  dd->Finalize();
}

}  // namespace lldd_demo
