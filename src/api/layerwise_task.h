// The task behind LlmDataDist::PushKvCacheLayerwise: a thread that waits for
// each layer to be released and pushes it to every destination, through
// the instance's public PushKvCache / PushKvBlocks.
#ifndef LLM_DATADIST_SRC_API_LAYERWISE_TASK_H_
#define LLM_DATADIST_SRC_API_LAYERWISE_TASK_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/result.h"
#include "llm_datadist/llm_datadist.h"

namespace llm_datadist {

struct LlmDataDist::LayerwiseTask::State {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;                 // under mu
  std::vector<Status> results;       // under mu; final once done
  size_t destinations = 0;
  std::atomic<bool> stop{false};     // Finalize: no further layer
  std::thread thread;
};

}  // namespace llm_datadist

namespace lldd {

using LayerwiseState = llm_datadist::LlmDataDist::LayerwiseTask::State;

// Checks the request against the source cache's description and starts
// the task's thread; the instance must outlive it (StopLayerwise).
Result StartLayerwise(llm_datadist::LlmDataDist* owner, int64_t src_cache_id, const llm_datadist::CacheDesc& src_desc,
                      const std::vector<llm_datadist::LlmDataDist::LayerwiseDestination>& destinations,
                      llm_datadist::LlmDataDist::LayerReadyFn layer_ready, uint8_t tensor_num_per_layer,
                      std::shared_ptr<LayerwiseState>* out);
// Stops the task before its next layer and joins its thread.
void StopLayerwise(LayerwiseState& state);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_API_LAYERWISE_TASK_H_
