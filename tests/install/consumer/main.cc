// Written the way the vendor's samples are: `using namespace llm_datadist`
// next to file-scope helpers with common names. It must compile as C++17
// with -Wall -Wextra -Werror against the installed header, and run.
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "llm_datadist/llm_datadist.h"

using namespace llm_datadist;

namespace {
constexpr uint64_t kPromptClusterId = 1;
constexpr uint64_t kDecoderClusterId = 2;
}  // namespace

std::string GetRecentErrMsg() { return LlmDataDist::GetLastErrorMessage(); }

int Initialize(LlmDataDist& dd, const char* listen) {
  std::map<AscendString, AscendString> options;
  options[OPTION_DEVICE_ID] = "0";
  options[OPTION_SYNC_CACHE_WAIT_TIME] = "3000";
  options[LlmDataDist::OPTION_TCP_CONNECTIONS_PER_LINK] = "2";  // our extension keys are class constants
  if (listen != nullptr) options[OPTION_LISTEN_IP_INFO] = listen;
  return dd.Initialize(options) == LLM_SUCCESS ? 0 : -1;
}

int Link(LlmDataDist& client, uint16_t port) {
  ClusterInfo cluster;
  cluster.remote_cluster_id = kPromptClusterId;
  IpInfo remote;
  remote.ip = "127.0.0.1";
  remote.port = port;
  cluster.remote_ip_infos.emplace_back(remote);
  std::vector<Status> rets;
  return client.LinkLlmClusters({cluster}, rets, 3000) == LLM_SUCCESS ? 0 : -1;
}

void Finalize(LlmDataDist& dd) { dd.Finalize(); }

int main() {
  LlmDataDist prompt(kPromptClusterId, LlmRole::kPrompt);
  LlmDataDist decoder(kDecoderClusterId, LlmRole::kDecoder);
  if (Initialize(prompt, "127.0.0.1:0") != 0 || Initialize(decoder, nullptr) != 0) {
    std::printf("init failed: %s\n", GetRecentErrMsg().c_str());
    return 1;
  }
  CacheDesc desc{};
  desc.num_tensors = 4;
  desc.data_type = DT_INT32;
  desc.shape = {8, 16};
  desc.placement = CachePlacement::kHost;
  std::vector<std::vector<int32_t>> src(4, std::vector<int32_t>(8 * 16));
  std::vector<uint64_t> addrs;
  for (size_t t = 0; t < src.size(); ++t) {
    for (size_t i = 0; i < src[t].size(); ++i) src[t][i] = static_cast<int32_t>(t * 1000 + i);
    addrs.push_back(reinterpret_cast<uint64_t>(src[t].data()));
  }
  int64_t src_id = -1;
  if (prompt.RegisterKvCache(desc, addrs, RegisterCfg{}, src_id) != LLM_SUCCESS) return 1;
  Cache dst{};
  if (decoder.AllocateCache(desc, dst) != LLM_SUCCESS) return 1;
  if (Link(decoder, prompt.GetListenPort()) != 0) {
    std::printf("link failed: %s\n", GetRecentErrMsg().c_str());
    return 1;
  }
  CacheIndex index{kPromptClusterId, src_id};
  if (decoder.PullKvBlocks(index, dst, {1, 2, 3}, {1, 2, 3}) != LLM_SUCCESS) {
    std::printf("pull failed: %s\n", GetRecentErrMsg().c_str());
    return 1;
  }
  for (size_t t = 0; t < 4; ++t) {
    const int32_t* p = reinterpret_cast<const int32_t*>(dst.tensor_addrs[t]);
    if (std::memcmp(p + 16, src[t].data() + 16, 3 * 16 * sizeof(int32_t)) != 0 || p[0] != 0) {
      std::printf("data mismatch in tensor %zu\n", t);
      return 1;
    }
  }
  Finalize(decoder);
  Finalize(prompt);
  std::printf("consumer OK\n");
  return 0;
}
