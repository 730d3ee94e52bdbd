// Threads for jobs that block (a stripe of a TCP transfer waits on its
// socket), shared by every caller in the process.
//
// RunAll runs a batch of jobs at once: the first on the calling thread,
// each other one on an idle worker, or on a new worker when none is idle
// (up to a cap, beyond which jobs wait for a worker). Unlike the copy pool
// (memory/parallel_copy.h), several callers run their batches at the same
// time, so concurrent transfers proceed in parallel instead of queueing.
// Workers sleep when idle and live as long as the process. Thread-safe.
#ifndef LLM_DATADIST_SRC_COMMON_WORKER_POOL_H_
#define LLM_DATADIST_SRC_COMMON_WORKER_POOL_H_

#include <functional>
#include <vector>

namespace lldd {

// Returns when every job has returned.
void RunAll(std::vector<std::function<void()>>& jobs);
// Workers started so far (for tests and diagnostics).
size_t WorkerCount();

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_WORKER_POOL_H_
