#include "bench/library_runner.h"

#include <atomic>
#include <latch>
#include <mutex>
#include <thread>

#include "bench/peer_protocol.h"
#include "bench/row_pattern.h"
#include "common/datadist_setup.h"
#include "common/units.h"

namespace lldd_bench {

using namespace llm_datadist;

LibraryRunner::~LibraryRunner() { ReleaseCaches(); }

void LibraryRunner::ReleaseCaches() {
  for (auto& l : local_) dd_.DeallocateCache(l.cache.cache_id);
  local_.clear();
  if (remote_cache_ > 0) {
    std::string ignored;
    peer_.Free(remote_cache_, &ignored);
  }
  remote_cache_ = -1;
  remote_pushed_ = false;
  shape_.reset();
}

BlockLists LibraryRunner::ListsFor(const Config& config, uint32_t thread) const {
  return MakeBlockLists(config, lldd_tools::RegionSeed({seed_, thread, config.block_bytes, config.blocks_per_call}));
}

uint8_t* LibraryRunner::LocalRow(const LocalCache& c, uint32_t tensor, uint64_t row) const {
  return reinterpret_cast<uint8_t*>(c.cache.tensor_addrs[tensor]) + row * shape_config_.block_bytes;
}

bool LibraryRunner::Prepare(const Config& config, std::string* error) {
  auto shape = std::make_tuple(config.memory, config.unit, config.tensors, config.block_bytes,
                               config.blocks_per_call, config.contiguous);
  if (!shape_ || *shape_ != shape) {
    ReleaseCaches();
    if (!peer_.CreateCache(config.memory, config.tensors, config.rows(), config.block_bytes, kServerSeed,
                           &remote_cache_, error))
      return false;
    shape_ = shape;
    shape_config_ = config;
  }
  while (local_.size() < config.threads) {
    CacheDesc desc;
    desc.placement = CachePlacement::kHost;
    desc.num_tensors = config.tensors;
    desc.data_type = DT_UINT8;
    desc.shape = {static_cast<int64_t>(config.rows()), static_cast<int64_t>(config.block_bytes)};
    LocalCache c;
    Status st = dd_.AllocateCache(desc, c.cache);
    if (st != LLM_SUCCESS) {
      *error = "AllocateCache of " + lldd_tools::FormatBytes(config.rows() * config.block_bytes * config.tensors) +
               " failed: " + lldd_tools::DescribeFailure(st);
      return false;
    }
    local_.push_back(c);
    // Touch every page now so that page faults do not land in the first timed calls.
    for (uint32_t t = 0; t < config.tensors; ++t)
      for (uint64_t r = 0; r < config.rows(); ++r)
        lldd_tools::FillPattern(LocalRow(local_.back(), t, r), config.block_bytes, RowSeed(kClientSeed, t, r));
  }
  return true;
}

Status LibraryRunner::Call(const Config& config, const Cache& local, const BlockLists& lists) {
  const CacheIndex remote{kPeerClusterId, remote_cache_, config.unit == Unit::kCache ? 1U : 0U};
  if (config.unit == Unit::kBlocks)
    return config.op == Op::kPull ? dd_.PullKvBlocks(remote, local, lists.src, lists.dst)
                                  : dd_.PushKvBlocks(local, remote, lists.src, lists.dst);
  // Remote batch 1 <-> local batch 0: a wrong index shows up in the check.
  return config.op == Op::kPull ? dd_.PullKvCache(remote, local, 0) : dd_.PushKvCache(local, remote, 0);
}

// One call whose every block is checked: the destination rows are reset to
// a pattern the source never holds first, so neither an earlier call's
// results nor an earlier config's can pass for this one's.
bool LibraryRunner::VerifiedCall(const Config& config, uint32_t thread, std::string* error) {
  const LocalCache& local = local_[thread];
  const BlockLists lists = ListsFor(config, thread);
  const std::string what = std::string(OpName(config.op)) + " " + UnitName(config.unit) + " (thread " +
                           std::to_string(thread) + ", verified call)";
  if (config.op == Op::kPull) {
    // Pushes of an earlier config sharing these caches overwrote the sources.
    if (remote_pushed_ && !peer_.Fill(remote_cache_, kServerSeed, lists.src, error)) return false;
    for (uint64_t row : lists.dst)
      for (uint32_t t = 0; t < config.tensors; ++t)
        lldd_tools::FillPattern(LocalRow(local, t, row), config.block_bytes, RowSeed(kClientSeed, t, row));
    Status st = Call(config, local.cache, lists);
    if (st != LLM_SUCCESS) {
      *error = what + " failed: " + lldd_tools::DescribeFailure(st);
      return false;
    }
    for (size_t i = 0; i < lists.dst.size(); ++i)
      for (uint32_t t = 0; t < config.tensors; ++t) {
        size_t at = lldd_tools::FindPatternMismatch(LocalRow(local, t, lists.dst[i]), config.block_bytes,
                                                    RowSeed(kServerSeed, t, lists.src[i]));
        if (at != config.block_bytes) {
          *error = what + " delivered wrong data: tensor " + std::to_string(t) + " row " + std::to_string(lists.dst[i]) +
                   " (from remote row " + std::to_string(lists.src[i]) + ") differs at byte " + std::to_string(at);
          return false;
        }
      }
    return true;
  }
  std::vector<std::pair<uint64_t, uint64_t>> pairs;
  for (size_t i = 0; i < lists.src.size(); ++i) pairs.emplace_back(lists.dst[i], lists.src[i]);
  // Sources get their pattern (a pull of an earlier config sharing this
  // cache may have overwritten them), destinations the serving side's.
  for (uint64_t row : lists.src)
    for (uint32_t t = 0; t < config.tensors; ++t)
      lldd_tools::FillPattern(LocalRow(local, t, row), config.block_bytes, RowSeed(kClientSeed, t, row));
  if (!peer_.Fill(remote_cache_, kServerSeed, lists.dst, error)) return false;
  Status st = Call(config, local.cache, lists);
  if (st != LLM_SUCCESS) {
    *error = what + " failed: " + lldd_tools::DescribeFailure(st);
    return false;
  }
  if (!peer_.Check(remote_cache_, kClientSeed, pairs, error)) {
    *error = what + " delivered wrong data: " + *error;
    return false;
  }
  return true;
}

bool LibraryRunner::Run(const Config& config, Measurement* out, std::string* error) {
  // The first call of the config: thread 0, before anything is timed.
  if (!Prepare(config, error)) return false;
  if (config.op == Op::kPush) remote_pushed_ = true;  // from here on, pulls must refill their sources
  if (!VerifiedCall(config, 0, error)) return false;
  out->verified_calls = 1;
  out->verified_blocks = config.blocks_per_call * config.tensors;

  std::vector<LoopResult> results(config.threads);
  std::latch ready(config.threads + 1);
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  Clock::time_point start;
  std::latch go(1);
  auto body = [&](uint32_t i) {
    const BlockLists lists = ListsFor(config, i);
    const Cache& local = local_[i].cache;
    auto call = [&] {
      Status st = Call(config, local, lists);
      if (st != LLM_SUCCESS) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!failed.exchange(true))
          *error = std::string(OpName(config.op)) + " " + UnitName(config.unit) + " (thread " + std::to_string(i) +
                   ") failed: " + lldd_tools::DescribeFailure(st);
      }
      return st == LLM_SUCCESS;
    };
    // Untimed: lets each thread get its own connection before the clock runs.
    call();
    ready.count_down();
    go.wait();
    results[i] = RunTimed(limits_, start, call);
  };
  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < config.threads; ++i) threads.emplace_back(body, i);
  ready.arrive_and_wait();
  start = Clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  if (failed) return false;
  // The last calls of the config: one more per thread, after the timed
  // ones, one thread at a time (pushes of all threads land in the same
  // remote rows).
  for (uint32_t i = 0; i < config.threads; ++i) {
    if (!VerifiedCall(config, i, error)) return false;
    ++out->verified_calls;
    out->verified_blocks += config.blocks_per_call * config.tensors;
  }

  lldd_tools::LatencyStats all;
  Clock::time_point end = start;
  for (const auto& r : results) {
    all.Merge(r.latency_us);
    out->calls += r.calls;
    end = std::max(end, r.end);
  }
  out->seconds = Seconds(start, end);
  out->gbps = lldd_tools::GigabytesPerSecond(static_cast<double>(config.bytes_per_call()) * static_cast<double>(out->calls),
                                             out->seconds);
  out->ops_per_s = out->seconds > 0 ? static_cast<double>(out->calls) / out->seconds : 0;
  out->p50_us = all.Percentile(50);
  out->p99_us = all.Percentile(99);
  return true;
}

}  // namespace lldd_bench
