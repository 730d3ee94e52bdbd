#include "engine/transfer_queue.h"

#include <algorithm>

#include "common/brief_lock.h"
#include "common/logging.h"
#include "common/per_thread.h"
#include "memory/line_pool.h"

namespace lldd {

TransferQueue::TransferQueue(uint32_t threads, size_t max_requests, JoinLimits join)
    : threads_wanted_(threads), max_requests_(max_requests), join_(join) {}

void TransferQueue::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  wake_pending_ = false;  // a woken worker may have left at the Stop
  std::lock_guard<std::mutex> inbox_lock(inbox_mu_);
  inbox_closed_ = false;
}

RequestStatus TransferQueue::StatusOf(const Result& r) {
  if (r.ok()) return RequestStatus::kCompleted;
  return r.code() == llm_datadist::LLM_TIMEOUT ? RequestStatus::kTimeout : RequestStatus::kFailed;
}

uint64_t TransferQueue::TakeInbox(Request* sync) {
  uint64_t next_id = 0;
  if (sync == nullptr && submitted_.load(std::memory_order_seq_cst) == taken_) return 0;
  {
    auto inbox_lock = BriefLock(inbox_mu_);
    inbox_.swap(inbox_taken_);
    inbox_bytes_ = 0;
    if (sync != nullptr) sync->id = next_id_++;
    next_id = next_id_;
  }
  taken_ += inbox_taken_.size();
  for (RequestPtr& req : inbox_taken_) {
    unfinished_[req->peer].push_back(req->id);  // ids rise: the lists stay sorted
    queued_bytes_ += req->bytes;
    ++async_unfinished_;
    queue_.push_back(std::move(req));
  }
  // A watcher that saw nothing outstanding for long sleeps untimed.
  if (!inbox_taken_.empty() && watcher_asleep_.load(std::memory_order_relaxed)) watch_cv_.notify_one();
  inbox_taken_.clear();
  if (sync != nullptr) unfinished_[sync->peer].push_back(sync->id);
  return next_id;
}

TransferQueue::RequestPtr TransferQueue::NewRequest(uint64_t peer, Deadline deadline, JobPtr job) {
  // Whole cache lines, from this thread's pool (line_pool.h).
  auto req = std::allocate_shared<Request>(LineAllocator<Request>{});
  req->peer = peer;
  req->deadline = deadline;
  req->ops = job->ops();
  req->bytes = job->bytes();
  req->job = std::move(job);
  return req;
}

Result TransferQueue::Submit(uint64_t peer, const void* user_data, Deadline deadline, JobPtr job, uint64_t* id,
                             std::chrono::steady_clock::time_point now) {
  auto req = NewRequest(peer, deadline, std::move(job));
  req->user_data = user_data;
  req->queued_at = now != std::chrono::steady_clock::time_point{} ? now : std::chrono::steady_clock::now();
  req->async = true;
  uint64_t inbox_bytes = 0;
  {
    auto handles_lock = BriefLock(handles_mu_);
    {
      auto inbox_lock = BriefLock(inbox_mu_);
      if (inbox_closed_) return Result::Failed("the engine is finalizing");
      if (requests_.size() >= max_requests_)
        return Result::OutOfMemory(Msg(requests_.size(), " asynchronous requests are outstanding, the most there may be;"
                                       " query their status (which releases finished ones) first"));
      req->id = next_id_++;
      inbox_.push_back(req);
      inbox_bytes = inbox_bytes_ += req->bytes;
      submitted_.fetch_add(1, std::memory_order_seq_cst);
    }
    requests_.Insert(req->id, req);  // ids rise: given under inbox_mu_, inserted in that order under handles_mu_
    handles_.store(requests_.size(), std::memory_order_relaxed);
  }
  *id = req->id;
  // A worker bound to look takes it (takers_ is read after the inbox was
  // filled, and a worker drains the inbox after it stops being a taker:
  // one of the two sees the other). Enough to share: MaybeWake judges.
  if (inbox_bytes < kShareBytes && !sharing_wanted_.load(std::memory_order_relaxed) &&
      takers_.load(std::memory_order_seq_cst) > 0)
    return Result::Ok();
  auto lock = BriefLock(mu_);
  // Workers start with the first asynchronous request: an engine used
  // only synchronously keeps no idle threads.
  while (threads_.size() < threads_wanted_) threads_.emplace_back([this] { Work(); });
  TakeInbox();
  MaybeWake();
  return Result::Ok();
}

Result TransferQueue::RunNow(uint64_t peer, Deadline deadline, JobPtr job) {
  auto req = NewRequest(peer, deadline, std::move(job));
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return Result::Failed("the engine is finalizing");
  TakeInbox(req.get());
  std::vector<RequestPtr> batch{req};
  TakeJoinable(req, &batch);
  Result result;
  RunAndFinish(batch, lock, &result);
  return result;
}

void TransferQueue::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  bool just_ran = false;  // a worker that ran a batch takes what queued behind it
  // Awake, this worker takes the inbox before it sleeps (Sleep).
  takers_.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    TakeInbox();
    if (stopping_ && queue_.empty()) break;
    const bool runnable = !queue_.empty() && (just_ran || wake_pending_ || stopping_ || FrontOverdue());
    if (!runnable) {
      // A worker that just ran looks for the next request a little before
      // it sleeps: a caller keeping requests in flight submits again within
      // microseconds, and a sleeping worker costs a wake-up (a system call
      // and a context switch on both sides) per transfer. One looks at a
      // time: more would take the cores the callers need.
      if (just_ran && queue_.empty() && spinning_ == 0) {
        just_ran = SpinForWork(lock);
        continue;
      }
      just_ran = false;
      Sleep(lock);
      continue;
    }
    // A caller streaming small requests submits the next within a
    // microsecond or so; waiting while they keep coming makes one transfer
    // of them rather than one each (each costs a system call or a round
    // trip, and the locks the caller needs).
    if (just_ran && Streaming()) Linger(lock);
    TakeInbox();
    if (queue_.empty()) continue;  // Stop took them
    wake_pending_ = false;
    std::vector<RequestPtr> batch{std::move(queue_.front())};
    queue_.pop_front();
    queued_bytes_ -= batch[0]->bytes;
    TakeJoinable(batch[0], &batch);
    RunAndFinish(batch, lock, nullptr);
    just_ran = true;
  }
  takers_.fetch_sub(1, std::memory_order_seq_cst);
}

void TransferQueue::Sleep(std::unique_lock<std::mutex>& lock) {
  // Not a taker from here: a submission from now on takes mu_ and wakes
  // whom MaybeWake says. One that came before is taken here (takers_ is
  // left before the inbox is looked at; a caller reads it after filling
  // the inbox: one of the two sees the other).
  takers_.fetch_sub(1, std::memory_order_seq_cst);
  const size_t queued = queue_.size();
  TakeInbox();
  if (queue_.size() > queued) MaybeWake();
  if (!watching_) {
    Watch(lock);
  } else {
    ++idle_;
    cv_.wait(lock);
    --idle_;
  }
  takers_.fetch_add(1, std::memory_order_seq_cst);
}

bool TransferQueue::FrontOverdue() const {
  return std::chrono::steady_clock::now() >= queue_.front()->queued_at + kTakeOverAfter;
}

void TransferQueue::Watch(std::unique_lock<std::mutex>& lock) {
  // The watcher keeps its role while it sleeps, woken by a timer rather
  // than by each submission: a queued request is left for the running
  // transfer to take when it ends, and only one that waited kTakeOverAfter
  // (that transfer is slow or stuck: a frozen peer) is the watcher's to
  // run. After a while with nothing outstanding it sleeps until the next
  // submission (not sooner: a caller whose requests all finished submits
  // again at once, and waking the watcher each time costs a system call).
  watching_ = true;
  auto quiet_since = std::chrono::steady_clock::now();
  for (;;) {
    TakeInbox();
    if (stopping_ || (!queue_.empty() && (wake_pending_ || FrontOverdue()))) break;
    if (async_unfinished_ > 0) {
      quiet_since = std::chrono::steady_clock::now();
      watch_cv_.wait_for(lock, kTakeOverAfter);
    } else if (std::chrono::steady_clock::now() - quiet_since < kWatchWhileQuiet) {
      watch_cv_.wait_for(lock, kTakeOverAfter);
    } else {
      watcher_asleep_.store(true, std::memory_order_seq_cst);
      // A submission before the flag was seen took the fast path: look again.
      if (submitted_.load(std::memory_order_seq_cst) == taken_) watch_cv_.wait(lock);
      watcher_asleep_.store(false, std::memory_order_relaxed);
      quiet_since = std::chrono::steady_clock::now();
    }
  }
  watching_ = false;
  // Someone else watches while this one runs (it may be the stuck one next).
  if (!stopping_ && idle_ > 0) cv_.notify_one();
}

bool TransferQueue::SpinForWork(std::unique_lock<std::mutex>& lock) {
  const uint64_t seen = submitted_.load(std::memory_order_relaxed);
  ++spinning_;
  lock.unlock();
  const auto until = std::chrono::steady_clock::now() + kSpinFor;
  for (int i = 0; submitted_.load(std::memory_order_acquire) == seen; ++i) {
    CpuRelax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) break;
  }
  RelockBriefly(lock);
  --spinning_;
  TakeInbox();
  return !queue_.empty();
}

bool TransferQueue::Streaming() const {
  return handles_.load(std::memory_order_relaxed) > 1 && queue_.size() < join_.requests / 8;
}

void TransferQueue::Linger(std::unique_lock<std::mutex>& lock) {
  uint64_t seen = submitted_.load(std::memory_order_relaxed);
  ++spinning_;  // what is submitted meanwhile is this worker's: nobody is woken
  lock.unlock();
  const auto start = std::chrono::steady_clock::now();
  for (auto last = start;;) {
    CpuRelax();
    const uint64_t now_seen = submitted_.load(std::memory_order_acquire);
    const auto now = std::chrono::steady_clock::now();
    if (now_seen != seen) {
      seen = now_seen;
      last = now;
    } else if (now - last >= kQuietGap) {
      break;
    }
    if (now - start >= kLinger) break;
  }
  RelockBriefly(lock);
  --spinning_;
}

void TransferQueue::RunAndFinish(std::vector<RequestPtr>& batch, std::unique_lock<std::mutex>& lock,
                                 Result* first_result) {
  uint64_t bytes = 0;
  for (const auto& req : batch) bytes += req->bytes;
  ++running_;
  running_bytes_ += bytes;
  sharing_wanted_.store(running_bytes_ >= kShareBytes, std::memory_order_relaxed);
  if (!queue_.empty()) MaybeWake();
  const bool async = first_result == nullptr;
  lock.unlock();
  for (const auto& req : batch) req->job->Started();
  const std::vector<Result> results = RunBatch(batch);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->job->Report(results[i]);
    // What a job holds (peer, op lists, meter) goes now on a caller's
    // thread; a worker hands it back to the callers (Retire).
    if (!async) batch[i]->job.reset();
    // Before the lock: the queue's lock is then held for the bookkeeping
    // only, not for a store to each request (a cache miss each) while a
    // caller waits to submit.
    batch[i]->status.store(StatusOf(results[i]), std::memory_order_release);
    // An asynchronous request's status carries no message: log it.
    if (!results[i].ok() && (i > 0 || async))
      LDD_LOG(Warn) << "asynchronous request " << batch[i]->id << " to cluster " << batch[i]->peer << ": "
                    << results[i].message();
  }
  RelockBriefly(lock);
  --running_;
  running_bytes_ -= bytes;
  sharing_wanted_.store(running_bytes_ >= kShareBytes, std::memory_order_relaxed);
  // A caller's transfer ends here, not in a worker's loop: hand on what queued.
  if (!async && !queue_.empty()) MaybeWake();
  Finished(batch);
  if (async) {
    Retire(batch);
  } else {
    *first_result = results[0];
  }
}

void TransferQueue::Retire(std::vector<RequestPtr>& batch) {
  // The callers allocated these requests and jobs; freeing them on their
  // threads keeps the allocator's per-thread caches filled, where a
  // worker's frees would send every caller's next allocations to the
  // shared arena and its lock. The references move: no count changes on
  // this core, so none of the requests' lines comes back here dirty.
  auto lock = BriefLock(retired_mu_);
  for (RequestPtr& req : batch) retired_.push_back(std::move(req));
  any_retired_.store(true, std::memory_order_release);
}

void TransferQueue::DropRetired() {
  if (!any_retired_.load(std::memory_order_acquire)) return;
  // This thread's spare list, emptied before each return: it lends its
  // storage to retired_ for the next batch, so neither side allocates in a
  // steady stream. A queue stopped after the thread's locals went (held by
  // one, or by a static at exit) uses a list of its own.
  std::vector<RequestPtr> own;
  std::vector<RequestPtr>* dropped = ThisThreads<std::vector<RequestPtr>>();
  if (dropped == nullptr) dropped = &own;
  {
    auto lock = BriefLock(retired_mu_);
    dropped->swap(retired_);
    any_retired_.store(false, std::memory_order_relaxed);
  }
  // A finished request keeps no job (its peer, op lists, meter), even while
  // its handle waits to be queried.
  for (RequestPtr& req : *dropped) req->job.reset();
  dropped->clear();
}

void TransferQueue::MaybeWake() {
  // A transfer that runs now takes the queued requests that can join it
  // when it ends, so small requests wait for it rather than each waking a
  // worker of its own (on a small machine that made batches of one). More
  // workers run at once only when there is enough work to share (or the
  // queue's front is overdue: Work).
  if (spinning_ > 0) return;  // a worker that just ran is looking: it takes this
  const bool nobody = running_ == 0 && !wake_pending_;
  const bool worth_sharing = queued_bytes_ >= kShareBytes || running_bytes_ >= kShareBytes;
  if (nobody || worth_sharing) {
    wake_pending_ = true;
    // An idle worker, if any, so that the watcher stays in its role.
    if (idle_ > 0)
      cv_.notify_one();
    else if (watching_)
      watch_cv_.notify_one();
  }
}

void TransferQueue::TakeJoinable(RequestPtr first, std::vector<RequestPtr>* batch) {
  // `first` by value: it is batch's first element, and batch grows.
  const auto now = std::chrono::steady_clock::now();
  if (first->deadline.ExpiredAt(now)) return;
  size_t ops = first->ops;
  uint64_t bytes = first->bytes;
  size_t looked = 0;
  for (auto it = queue_.begin(); it != queue_.end() && batch->size() < join_.requests && looked < join_.scan;
       ++looked) {
    const Request& r = **it;
    if (ops + r.ops > join_.ops || bytes + r.bytes > join_.bytes || r.deadline.ExpiredAt(now) ||
        !first->job->CanJoin(*r.job)) {
      ++it;
      continue;
    }
    ops += r.ops;
    bytes += r.bytes;
    queued_bytes_ -= r.bytes;
    batch->push_back(std::move(*it));
    it = queue_.erase(it);
  }
  // Nothing left for a worker woken earlier (a caller's RunNow took it).
  if (queue_.empty()) wake_pending_ = false;
}

Result TransferQueue::RunAlone(const Request& req) {
  // A request whose deadline passed in the queue never starts.
  return req.deadline.Expired() ? Result::Timeout("the request waited past its deadline") : req.job->Run(req.deadline);
}

std::vector<Result> TransferQueue::RunBatch(const std::vector<RequestPtr>& batch) {
  if (batch.size() == 1) return {RunAlone(*batch[0])};
  std::vector<const TransferJob*> jobs;
  Deadline earliest = batch[0]->deadline;
  for (const auto& req : batch) {
    jobs.push_back(req->job.get());
    earliest = earliest.Earlier(req->deadline);
  }
  const Result joined = batch[0]->job->Join(jobs)->Run(earliest);
  std::vector<Result> results(batch.size(), joined);
  if (joined.ok()) return results;
  // Whichever request made it fail (or whose deadline cut it short), the
  // others must not share its fate: each runs again alone. The data paths
  // have let go of every range by now, so moving a range twice is harmless.
  for (size_t i = 0; i < batch.size(); ++i) results[i] = RunAlone(*batch[i]);
  return results;
}

Result TransferQueue::Status(uint64_t id, RequestStatus* status) {
  // Not under mu_: a caller polling its requests must not slow the
  // workers that finish them.
  DropRetired();
  auto lock = BriefLock(handles_mu_);
  RequestPtr* req = requests_.Find(id);
  if (req == nullptr) return Result::ParamInvalid(Msg("no asynchronous request ", id, " (finished ones are released when queried)"));
  *status = (*req)->status.load(std::memory_order_acquire);
  if (*status != RequestStatus::kWaiting) {
    requests_.Erase(id);
    handles_.store(requests_.size(), std::memory_order_relaxed);
  }
  return Result::Ok();
}

void TransferQueue::Query(size_t max, bool skip_waiting, std::vector<RequestResult>* results) {
  results->clear();
  DropRetired();
  auto lock = BriefLock(handles_mu_);
  requests_.Scan([&](uint64_t id, RequestPtr& req) {
    if (results->size() >= max) return false;
    const RequestStatus status = req->status.load(std::memory_order_acquire);
    if (status == RequestStatus::kWaiting && skip_waiting) return true;
    results->push_back({id, req->user_data, status});
    if (status != RequestStatus::kWaiting) req.reset();  // reported: released
    return true;
  });
  handles_.store(requests_.size(), std::memory_order_relaxed);
}

void TransferQueue::FailPeer(uint64_t peer) {
  std::lock_guard<std::mutex> lock(mu_);
  TakeInbox();
  std::vector<RequestPtr> failed;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->peer == peer) {
      queued_bytes_ -= (*it)->bytes;
      (*it)->status.store(RequestStatus::kFailed, std::memory_order_release);
      (*it)->job.reset();
      failed.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  Finished(failed);
  if (queue_.empty()) wake_pending_ = false;  // a worker woken for them finds nothing
}

void TransferQueue::Finished(const std::vector<RequestPtr>& reqs) {
  thread_local std::vector<uint64_t> done;  // one peer's finished ids, sorted
  for (size_t from = 0; from < reqs.size();) {
    const uint64_t peer = reqs[from]->peer;
    done.clear();
    size_t to = from;
    for (; to < reqs.size() && reqs[to]->peer == peer; ++to) {
      if (reqs[to]->async) --async_unfinished_;
      done.push_back(reqs[to]->id);
    }
    from = to;
    auto it = unfinished_.find(peer);
    if (it == unfinished_.end()) continue;
    std::sort(done.begin(), done.end());
    // Both lists sorted: one pass removes every finished id.
    std::vector<uint64_t>& ids = it->second;
    size_t kept = 0;
    size_t d = 0;
    for (uint64_t id : ids) {
      while (d < done.size() && done[d] < id) ++d;
      if (d < done.size() && done[d] == id) continue;
      ids[kept++] = id;
    }
    ids.resize(kept);
    // A peer's list keeps its storage between bursts (no allocation per
    // request); only when many peers came and went are empty lists dropped.
    if (ids.empty() && unfinished_.size() > kKeptPeerLists) unfinished_.erase(it);
  }
  if (!reqs.empty()) finished_.notify_all();
}

Result TransferQueue::WaitPeer(uint64_t peer, Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t next_id = 0;
  {
    std::lock_guard<std::mutex> inbox_lock(inbox_mu_);
    next_id = next_id_;
  }
  // Every request with a lower id is in the inbox (an id is given with the
  // push), in unfinished_, or finished; requests submitted later do not
  // count.
  TakeInbox();
  const uint64_t last = next_id - 1;
  const bool done = finished_.wait_until(lock, deadline.when(), [&] {
    auto it = unfinished_.find(peer);
    return it == unfinished_.end() || it->second.empty() || it->second.front() > last;
  });
  return done ? Result::Ok() : Result::Timeout(Msg("earlier requests to cluster ", peer, " did not finish in time"));
}

void TransferQueue::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    {
      std::lock_guard<std::mutex> inbox_lock(inbox_mu_);
      inbox_closed_ = true;
    }
    TakeInbox();
    std::vector<RequestPtr> failed(queue_.begin(), queue_.end());
    for (auto& req : failed) {
      req->status.store(RequestStatus::kFailed, std::memory_order_release);
      req->job.reset();
    }
    Finished(failed);
    queue_.clear();
    queued_bytes_ = 0;
    cv_.notify_all();
    watch_cv_.notify_all();
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  DropRetired();
}

}  // namespace lldd
