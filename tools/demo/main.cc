// llm_datadist_demo: disaggregated serving in miniature.
//
// A prefill process (forked server) computes the KV cache of a stream of
// requests into its paged block pool; this process, decode, pulls each
// request into its own, differently numbered blocks and checks every byte.
// Memory stays bounded: both pools hold `--concurrency` of the largest
// requests and blocks are reused once decode is done with them.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>

#include "common/child_process.h"
#include "common/model_preset.h"
#include "common/transports.h"
#include "common/units.h"
#include "demo/decode.h"
#include "demo/messages.h"
#include "demo/prefill.h"
#include "demo/workload.h"

namespace {

using lldd_tools::FormatBytes;

struct Args {
  std::string model = "llama3-8b";
  lldd_demo::WorkloadConfig workload;
  std::string transport = "auto";
  bool layerwise = false;
  uint32_t concurrency = 2;
  uint32_t tcp_connections = 0;
  int64_t wait_ms = 60000;
  bool cold_pools = false;
  std::string directory;
};

int Fail(const std::string& why) {
  std::fprintf(stderr, "llm_datadist_demo: FAILED: %s\n", why.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // A peer that dies must show up as an error, not kill us on write.
  ::signal(SIGPIPE, SIG_IGN);
  const auto program_start = std::chrono::steady_clock::now();
  Args a;
  CLI::App app{"Disaggregated LLM serving in miniature: a prefill process hands the KV cache of each request to a "
               "decode process through llm_datadist, and decode verifies every byte."};
  app.add_option("--model", a.model, "model preset: " + lldd_tools::ModelPresetNames())->capture_default_str();
  app.add_option("--requests", a.workload.requests, "number of requests")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--min-tokens", a.workload.min_tokens, "shortest prompt")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-tokens", a.workload.max_tokens, "longest prompt")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", a.workload.seed, "seed of prompt lengths, block numbering and data")->capture_default_str();
  app.add_option("--transport", a.transport, "data path on both sides: " + lldd_tools::KnownTransportsHelp())
      ->capture_default_str();
  app.add_flag("--layerwise", a.layerwise, "pull one layer per call (K and V together) instead of a whole request");
  app.add_option("--concurrency", a.concurrency, "requests in flight at once (pool size, decode threads)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--tcp-connections", a.tcp_connections, "llm.TcpConnectionsPerLink (0: library default)")
      ->check(CLI::Range(0, 64));
  app.add_option("--wait-ms", a.wait_ms, "OPTION_SYNC_CACHE_WAIT_TIME of each pull")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--cold-pools", a.cold_pools,
               "do not touch the block pools at startup: first transfers then include page faults");
  app.add_option("--directory", a.directory,
                 "etcd://host:port[,...]: both sides publish themselves there (llm.Directory) and decode links to "
                 "prefill by cluster id");
  CLI11_PARSE(app, argc, argv);

  const lldd_tools::ModelPreset* model = lldd_tools::FindModelPreset(a.model);
  if (model == nullptr) return Fail("unknown model '" + a.model + "' (known: " + lldd_tools::ModelPresetNames() + ")");
  if (a.workload.min_tokens > a.workload.max_tokens) return Fail("--min-tokens exceeds --max-tokens");

  const auto requests = lldd_demo::MakeRequests(*model, a.workload);
  const uint64_t pool_blocks = lldd_demo::PoolBlocks(requests, a.concurrency);
  const uint64_t per_block_all_tensors = model->block_bytes() * model->tensors();
  uint64_t total_bytes = 0;
  for (const auto& r : requests) total_bytes += r.blocks * per_block_all_tensors;

  std::printf("model %s: %u layers x (K,V), %u KV heads x %u dims, bf16, %u tokens/block = %s per block per tensor\n",
              model->name, model->layers, model->kv_heads, model->head_dim, model->block_tokens,
              FormatBytes(model->block_bytes()).c_str());
  std::printf("%u requests of %llu..%llu tokens (seed %llu): %s of KV cache; pools of %llu blocks (%s) on each side\n",
              a.workload.requests, static_cast<unsigned long long>(a.workload.min_tokens),
              static_cast<unsigned long long>(a.workload.max_tokens), static_cast<unsigned long long>(a.workload.seed),
              FormatBytes(total_bytes).c_str(), static_cast<unsigned long long>(pool_blocks),
              FormatBytes(pool_blocks * per_block_all_tensors).c_str());

  lldd_tools::InstanceConfig instance;
  instance.transport = a.transport;
  instance.wait_ms = a.wait_ms;
  instance.tcp_connections = a.tcp_connections;
  if (!a.directory.empty()) instance.extra[llm_datadist::LlmDataDist::OPTION_DIRECTORY] = a.directory;

  // Fork first: this process has no threads yet (see child_process.h).
  lldd_demo::PrefillConfig pc{model, requests, pool_blocks, a.workload.seed, !a.cold_pools, instance};
  pc.instance.listen = "127.0.0.1:0";
  auto prefill = lldd_tools::ChildProcess::Fork([&](lldd_tools::LineChannel& ch) { return lldd_demo::RunPrefill(pc, ch); });
  if (!prefill) return Fail("cannot fork the prefill process");

  std::string line;
  if (!prefill->channel().ReadLine(&line, 60000) || lldd_demo::Verb(line) != "listening") {
    prefill->WaitOrKill(1000);
    return Fail(line.empty() ? "prefill process did not start" : lldd_demo::Rest(line));
  }
  uint16_t port = 0;
  double prefill_prefault_s = 0;
  if (std::sscanf(line.c_str(), "listening %hu %lf", &port, &prefill_prefault_s) != 2) {
    prefill->WaitOrKill(1000);
    return Fail("unexpected message from prefill: " + line);
  }

  lldd_demo::DecodeConfig dc{model,         requests,      pool_blocks, a.workload.seed, a.layerwise,
                             a.concurrency, !a.cold_pools, instance};
  lldd_demo::DecodeResult result;
  {
    lldd_tools::ProgressBar progress(requests.size(), "decode");
    lldd_demo::RunDecode(dc, prefill->channel(), port, progress.enabled() ? &progress : nullptr, &result);
  }
  prefill->channel().WriteLine("quit");
  double fill_s = 0;
  if (prefill->channel().ReadLine(&line, 10000) && lldd_demo::Verb(line) == "bye")
    fill_s = std::stod(lldd_demo::Rest(line));
  const int prefill_exit = prefill->WaitOrKill(10000);
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - program_start).count();

  if (!result.error.empty()) return Fail(result.error);
  if (prefill_exit != 0) return Fail("prefill process exited with status " + std::to_string(prefill_exit));
  if (result.verified != requests.size())
    return Fail(std::to_string(result.verified) + " of " + std::to_string(requests.size()) + " requests completed");

  const auto& lat = result.latency_ms;
  const double pull_s = lat.Sum() / 1000.0;
  std::printf("link: %s (asked: %s), %s, %u decode threads, %llu pull calls\n", result.link_transport.c_str(),
              a.transport.c_str(), a.layerwise ? "one call per layer" : "one call per request", a.concurrency,
              static_cast<unsigned long long>(result.calls));
  std::printf("per-request transfer latency: p50 %.1f ms, p99 %.1f ms (min %.1f, max %.1f)\n", lat.Percentile(50),
              lat.Percentile(99), lat.Min(), lat.Max());
  std::printf("throughput: %.2f GB/s aggregate over the transfer window (%.2f s); %.2f GB/s mean rate within a call\n",
              lldd_tools::GigabytesPerSecond(static_cast<double>(result.bytes), result.pull_span_s), result.pull_span_s,
              lldd_tools::GigabytesPerSecond(static_cast<double>(result.bytes), pull_s));
  std::printf("prefill spent %.2f s writing KV data; pools touched at startup in %.2f s (prefill), %.2f s (decode)%s; "
              "whole run %.2f s\n",
              fill_s, prefill_prefault_s, result.prefault_s, a.cold_pools ? " (--cold-pools)" : "", wall_s);
  std::printf("decode instance's GetStats():\n%s", result.stats_summary.c_str());
  std::printf("OK: %u/%zu requests, %s verified byte for byte | model=%s transport=%s%s p50=%.1fms p99=%.1fms "
              "%.2fGB/s\n",
              result.verified, requests.size(), FormatBytes(result.bytes).c_str(), model->name,
              result.link_transport.c_str(), a.layerwise ? " layerwise" : "", lat.Percentile(50), lat.Percentile(99),
              lldd_tools::GigabytesPerSecond(static_cast<double>(result.bytes), result.pull_span_s));
  return 0;
}
