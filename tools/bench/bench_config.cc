#include "bench/bench_config.h"

#include <algorithm>
#include <set>

namespace lldd_bench {

const char* OpName(Op op) { return op == Op::kPull ? "pull" : "push"; }
const char* UnitName(Unit unit) { return unit == Unit::kBlocks ? "blocks" : "cache"; }

void OrderForRun(const std::vector<std::string>& transports, std::vector<Config>* configs) {
  auto rank = [&](const std::string& t) {
    return std::find(transports.begin(), transports.end(), t) - transports.begin();
  };
  std::stable_sort(configs->begin(), configs->end(), [&](const Config& a, const Config& b) {
    return std::make_tuple(rank(a.transport), a.memory != kMemoryAllocated, a.shape_key(), a.op, a.threads) <
           std::make_tuple(rank(b.transport), b.memory != kMemoryAllocated, b.shape_key(), b.op, b.threads);
  });
}

std::vector<Config> BuildSweep(const SweepSpec& spec) {
  std::vector<Config> out;
  for (const auto& transport : spec.transports)
    for (const auto& memory : spec.memories)
      for (Unit unit : spec.units) {
        std::set<uint64_t> rows_done;
        for (uint64_t bs : spec.block_sizes)
          for (uint64_t n : spec.blocks_per_call) {
            Config c;
            c.transport = transport;
            c.memory = memory;
            c.unit = unit;
            c.tensors = spec.tensors;
            c.contiguous = spec.contiguous;
            c.block_bytes = unit == Unit::kBlocks ? bs : bs * n;
            c.blocks_per_call = unit == Unit::kBlocks ? n : 1;
            if (c.bytes_per_call() > spec.max_call_bytes) continue;
            if (unit == Unit::kCache && !rows_done.insert(c.block_bytes).second) continue;
            for (Op op : spec.ops)
              for (uint32_t th : spec.threads) {
                c.op = op;
                c.threads = th;
                out.push_back(c);
              }
          }
      }
  OrderForRun(spec.transports, &out);
  return out;
}

namespace {

Config Make(const std::string& transport, const char* memory, Op op, Unit unit, uint64_t block, uint64_t n) {
  Config c;
  c.transport = transport;
  c.memory = memory;
  c.op = op;
  c.unit = unit;
  c.block_bytes = block;
  c.blocks_per_call = n;
  return c;
}

}  // namespace

std::vector<Config> QuickSweep(const std::vector<std::string>& transports, const std::vector<uint32_t>& threads) {
  std::vector<Config> shapes;
  for (const auto& t : transports) {
    // Bandwidth: 256 MiB per call in big blocks, from both kinds of memory.
    shapes.push_back(Make(t, kMemoryAllocated, Op::kPull, Unit::kBlocks, 1 << 20, 256));
    shapes.push_back(Make(t, kMemoryAllocated, Op::kPush, Unit::kBlocks, 1 << 20, 256));
    shapes.push_back(Make(t, kMemoryRegistered, Op::kPull, Unit::kBlocks, 1 << 20, 256));
    // Per-block overhead: thousands of small scattered blocks in one call.
    shapes.push_back(Make(t, kMemoryAllocated, Op::kPull, Unit::kBlocks, 4096, 2048));
    // Small calls from many threads: 256 scattered 4 KiB blocks (1 MiB).
    shapes.push_back(Make(t, kMemoryAllocated, Op::kPull, Unit::kBlocks, 4096, 256));
    shapes.push_back(Make(t, kMemoryRegistered, Op::kPull, Unit::kBlocks, 4096, 256));
    // Latency: one small block.
    shapes.push_back(Make(t, kMemoryAllocated, Op::kPull, Unit::kBlocks, 65536, 1));
  }
  std::vector<Config> out;
  for (const Config& c : shapes)
    for (uint32_t th : threads) {
      Config x = c;
      x.threads = th;
      out.push_back(x);
    }
  OrderForRun(transports, &out);
  return out;
}

std::vector<Config> SmokeSweep(const std::vector<std::string>& transports) {
  std::vector<Config> out;
  for (const auto& t : transports) {
    out.push_back(Make(t, kMemoryAllocated, Op::kPull, Unit::kBlocks, 4096, 16));
    out.push_back(Make(t, kMemoryRegistered, Op::kPush, Unit::kBlocks, 4096, 16));
    out.push_back(Make(t, kMemoryAllocated, Op::kPull, Unit::kCache, 65536, 1));
    out.push_back(Make(t, kMemoryRegistered, Op::kPush, Unit::kCache, 65536, 1));
    Config threaded = Make(t, kMemoryAllocated, Op::kPull, Unit::kBlocks, 4096, 16);
    threaded.threads = 2;
    out.push_back(threaded);
  }
  OrderForRun(transports, &out);
  return out;
}

}  // namespace lldd_bench
