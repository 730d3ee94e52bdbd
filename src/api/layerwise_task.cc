#include "api/layerwise_task.h"

#include <chrono>

namespace lldd {
namespace {

using llm_datadist::Cache;
using llm_datadist::CacheIndex;
using llm_datadist::KvCacheExtParam;
using llm_datadist::LlmDataDist;
using Destination = LlmDataDist::LayerwiseDestination;

// A destination with its ranges resolved to concrete layers.
struct Plan {
  Destination dest;
  int32_t src_first = 0, src_last = 0, dst_first = 0;
};

Result Resolve(const Destination& d, int32_t num_layers, Plan* out) {
  out->dest = d;
  auto [sf, sl] = d.src_layer_range;
  if (sf == -1 && sl == -1) {
    sf = 0;
    sl = num_layers - 1;
  }
  if (sf < 0 || sl < sf || sl >= num_layers)
    return Result::ParamInvalid(Msg("src_layer_range [", sf, ", ", sl, "] is outside the cache's ", num_layers,
                                    " layers"));
  auto [df, dl] = d.dst_layer_range;
  if (df == -1 && dl == -1) {
    df = sf;
    dl = sl;
  }
  if (df < 0 || dl - df != sl - sf)
    return Result::ParamInvalid(Msg("dst_layer_range [", df, ", ", dl, "] does not match src_layer_range [", sf,
                                    ", ", sl, "]"));
  if (d.src_blocks.size() != d.dst_blocks.size())
    return Result::ParamInvalid("src_blocks and dst_blocks differ in length");
  out->src_first = sf;
  out->src_last = sl;
  out->dst_first = df;
  return Result::Ok();
}

Status PushLayer(LlmDataDist* owner, int64_t src_id, const Plan& p, int32_t layer, uint8_t per_layer) {
  Cache src;
  src.cache_id = src_id;
  KvCacheExtParam ext;
  const int32_t dst_layer = p.dst_first + (layer - p.src_first);
  ext.src_layer_range = {layer, layer};
  ext.dst_layer_range = {dst_layer, dst_layer};
  ext.tensor_num_per_layer = per_layer;
  if (!p.dest.src_blocks.empty())
    return owner->PushKvBlocks(src, p.dest.dst_cache_index, p.dest.src_blocks, p.dest.dst_blocks, ext);
  return owner->PushKvCache(src, p.dest.dst_cache_index, p.dest.src_batch_index, -1, ext);
}

// The task's thread: layer after layer, as the application releases them.
void Run(LlmDataDist* owner, int64_t src_id, std::vector<Plan> plans, LlmDataDist::LayerReadyFn layer_ready,
         uint8_t per_layer, int32_t num_layers, LayerwiseState* state) {
  std::vector<Status> results(plans.size(), llm_datadist::LLM_TIMEOUT);
  std::vector<bool> live(plans.size(), true);
  for (int32_t layer = 0; layer < num_layers; ++layer) {
    bool wanted = false;
    for (size_t i = 0; i < plans.size(); ++i)
      wanted = wanted || (live[i] && plans[i].src_first <= layer && layer <= plans[i].src_last);
    if (!wanted) continue;
    const bool ready = !state->stop.load() && layer_ready(static_cast<uint32_t>(layer));
    if (!ready || state->stop.load()) {
      const Status why = ready ? llm_datadist::LLM_FAILED : llm_datadist::LLM_PARAM_INVALID;
      for (size_t i = 0; i < plans.size(); ++i)
        if (live[i]) results[i] = why;
      break;
    }
    for (size_t i = 0; i < plans.size(); ++i) {
      if (!live[i] || layer < plans[i].src_first || layer > plans[i].src_last) continue;
      const Status st = PushLayer(owner, src_id, plans[i], layer, per_layer);
      if (st != llm_datadist::LLM_SUCCESS || layer == plans[i].src_last) {
        results[i] = st;
        live[i] = false;
      }
    }
  }
  std::lock_guard<std::mutex> lock(state->mu);
  state->results = std::move(results);
  state->done = true;
  state->cv.notify_all();
}

}  // namespace

Result StartLayerwise(LlmDataDist* owner, int64_t src_cache_id, const llm_datadist::CacheDesc& src_desc,
                      const std::vector<Destination>& destinations, LlmDataDist::LayerReadyFn layer_ready,
                      uint8_t tensor_num_per_layer, std::shared_ptr<LayerwiseState>* out) {
  if (destinations.empty()) return Result::ParamInvalid("no destinations given");
  if (!layer_ready) return Result::ParamInvalid("layer_ready is empty");
  if (tensor_num_per_layer == 0 || src_desc.num_tensors % tensor_num_per_layer != 0)
    return Result::ParamInvalid(Msg("tensor_num_per_layer ", int{tensor_num_per_layer}, " does not divide the ",
                                    src_desc.num_tensors, " tensors of cache ", src_cache_id));
  const auto num_layers = static_cast<int32_t>(src_desc.num_tensors / tensor_num_per_layer);
  std::vector<Plan> plans(destinations.size());
  for (size_t i = 0; i < destinations.size(); ++i)
    LDD_RETURN_IF_ERROR(Resolve(destinations[i], num_layers, &plans[i]).WithContext(Msg("destination ", i)));
  auto state = std::make_shared<LayerwiseState>();
  state->destinations = destinations.size();
  LayerwiseState* raw = state.get();
  state->thread = std::thread(Run, owner, src_cache_id, std::move(plans), std::move(layer_ready),
                              tensor_num_per_layer, num_layers, raw);
  *out = std::move(state);
  return Result::Ok();
}

void StopLayerwise(LayerwiseState& state) {
  state.stop.store(true);
  if (state.thread.joinable()) state.thread.join();
}

}  // namespace lldd

namespace llm_datadist {

Status LlmDataDist::LayerwiseTask::Wait(int32_t timeout_in_millis, std::vector<Status>* results) const {
  std::unique_lock<std::mutex> lock(state_->mu);
  auto done = [this] { return state_->done; };
  if (timeout_in_millis < 0) {
    state_->cv.wait(lock, done);
  } else if (!state_->cv.wait_for(lock, std::chrono::milliseconds(timeout_in_millis), done)) {
    if (results != nullptr) results->assign(state_->destinations, LLM_TIMEOUT);
    return LLM_TIMEOUT;
  }
  if (results != nullptr) *results = state_->results;
  for (Status s : state_->results)
    if (s != LLM_SUCCESS) return s;
  return LLM_SUCCESS;
}

bool LlmDataDist::LayerwiseTask::Done() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

}  // namespace llm_datadist
