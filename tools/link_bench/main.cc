// llm_datadist_link_bench: what a link by cluster id (resolved through the
// etcd directory, llm.Directory) costs over a link by address.
//
// A forked server publishes itself in etcd; this process links to it and
// unlinks again, `--links` times each way, alternating the two kinds so
// that both see the same machine state, and prints the p50 and p99 of each
// and the difference of the medians.
//
//   etcd --data-dir /tmp/e &   # or any etcd
//   llm_datadist_link_bench --directory etcd://127.0.0.1:2379 --links 100
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>

#include "common/child_process.h"
#include "common/datadist_setup.h"
#include "common/stats.h"

namespace {

using namespace llm_datadist;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kServerId = 7001;
constexpr uint64_t kClientId = 7002;

int Fail(const std::string& why) {
  std::fprintf(stderr, "llm_datadist_link_bench: FAILED: %s\n", why.c_str());
  return 1;
}

int Serve(const lldd_tools::InstanceConfig& config, lldd_tools::LineChannel& parent) {
  std::string error;
  auto dd = lldd_tools::StartInstance(kServerId, LlmRole::kPrompt, config, &error);
  if (!dd) {
    parent.WriteLine("error " + error);
    return 1;
  }
  parent.WriteLine("port " + std::to_string(dd->GetListenPort()));
  std::string line;
  parent.ReadLine(&line);  // anything, or the parent's end: stop
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  std::string directory;
  std::string transport = "tcp";
  int links = 100;
  CLI::App app{"Time of LinkLlmClusters by cluster id (through etcd) against by address"};
  app.add_option("--directory", directory, "etcd://host:port of a running etcd")->required();
  app.add_option("--links", links, "links of each kind")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--transport", transport, "data path of the links")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  lldd_tools::InstanceConfig config;
  config.transport = transport;
  config.extra[LlmDataDist::OPTION_DIRECTORY] = directory;
  config.extra[LlmDataDist::OPTION_DIRECTORY_PREFIX] = "/llm_datadist_link_bench/" + std::to_string(getpid()) + "/";
  lldd_tools::InstanceConfig server_config = config;
  server_config.listen = "127.0.0.1:0";
  // Fork first: this process has no threads yet (see child_process.h).
  auto server = lldd_tools::ChildProcess::Fork(
      [&](lldd_tools::LineChannel& ch) { return Serve(server_config, ch); });
  if (!server) return Fail("cannot fork the server");
  std::string line;
  if (!server->channel().ReadLine(&line, 30000) || line.rfind("port ", 0) != 0)
    return Fail(line.empty() ? "server did not start" : line);
  const uint16_t port = static_cast<uint16_t>(std::stoi(line.substr(5)));

  std::string error;
  auto dd = lldd_tools::StartInstance(kClientId, LlmRole::kDecoder, config, &error);
  if (!dd) return Fail(error);
  lldd_tools::LatencyStats by_address, by_id;
  ClusterInfo unlink_info;
  unlink_info.remote_cluster_id = kServerId;
  for (int i = 0; i < 2 * links; ++i) {
    const bool id = i % 2 == 1;
    const auto start = Clock::now();
    if (!lldd_tools::LinkTo(*dd, kServerId, id ? "" : "127.0.0.1", port, 5000, &error)) return Fail(error);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    (id ? by_id : by_address).Add(ms);
    std::vector<Status> rets;
    if (dd->UnlinkLlmClusters({unlink_info}, rets, 5000) != LLM_SUCCESS)
      return Fail("UnlinkLlmClusters: " + lldd_tools::DescribeFailure(rets.empty() ? LLM_FAILED : rets[0]));
  }
  server->channel().WriteLine("quit");
  server->WaitOrKill(5000);
  std::printf("link by address: p50 %.3f ms, p99 %.3f ms (%d links, %s)\n", by_address.Percentile(50),
              by_address.Percentile(99), links, transport.c_str());
  std::printf("link by id:      p50 %.3f ms, p99 %.3f ms (%d links, through %s)\n", by_id.Percentile(50),
              by_id.Percentile(99), links, directory.c_str());
  std::printf("a link by id adds %.3f ms at p50\n", by_id.Percentile(50) - by_address.Percentile(50));
  return 0;
}
