// Storage of finished transfers' op lists, kept per thread for the next
// plan: a caller streaming small requests (HIXL's TransferAsync of one op)
// would otherwise allocate and free four vectors per request, and freeing
// a burst of them overflows the allocator's per-thread cache into its
// shared arena. A job's storage returns to the pool of the thread that
// destroys the job: the caller's for its own requests (the transfer queue
// hands finished jobs back to the callers), a worker's for the joins it
// made. Bounded per thread; oversized lists are freed, not kept.
#ifndef LLM_DATADIST_SRC_ENGINE_SPARE_TRANSFERS_H_
#define LLM_DATADIST_SRC_ENGINE_SPARE_TRANSFERS_H_

#include <vector>

#include "engine/engine.h"

namespace lldd {

// An empty OpsTransfer, its lists perhaps with capacity.
Engine::OpsTransfer SpareTransfer();
// An empty group list, perhaps with capacity.
std::vector<Engine::OpsTransfer> SpareGroups();
// Gives `groups` (and each transfer's lists) to this thread's pool.
void RecycleGroups(std::vector<Engine::OpsTransfer>&& groups);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_SPARE_TRANSFERS_H_
