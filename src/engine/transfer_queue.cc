#include "engine/transfer_queue.h"

#include "common/logging.h"

namespace lldd {

TransferQueue::TransferQueue(uint32_t threads, size_t max_requests, JoinLimits join)
    : threads_wanted_(threads), max_requests_(max_requests), join_(join) {}

void TransferQueue::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  wake_pending_ = false;  // a woken worker may have left at the Stop
}

RequestStatus TransferQueue::StatusOf(const Result& r) {
  if (r.ok()) return RequestStatus::kCompleted;
  return r.code() == llm_datadist::LLM_TIMEOUT ? RequestStatus::kTimeout : RequestStatus::kFailed;
}

Result TransferQueue::Admit(const RequestPtr& req) {
  if (stopping_) return Result::Failed("the engine is finalizing");
  req->id = next_id_++;
  unfinished_[req->peer].insert(req->id);
  return Result::Ok();
}

Result TransferQueue::Submit(uint64_t peer, const void* user_data, Deadline deadline, JobPtr job, uint64_t* id) {
  auto req = std::make_shared<Request>();
  req->peer = peer;
  req->user_data = user_data;
  req->deadline = deadline;
  req->job = std::move(job);
  req->queued_at = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (!stopping_ && requests_.size() >= max_requests_)
    return Result::OutOfMemory(Msg(requests_.size(), " asynchronous requests are outstanding, the most there may be;"
                                   " query their status (which releases finished ones) first"));
  LDD_RETURN_IF_ERROR(Admit(req));
  // Workers start with the first asynchronous request: an engine used
  // only synchronously keeps no idle threads.
  while (threads_.size() < threads_wanted_) threads_.emplace_back([this] { Work(); });
  requests_[req->id] = req;
  queued_bytes_ += req->job->bytes();
  queue_.push_back(req);
  submitted_.fetch_add(1, std::memory_order_release);
  MaybeWake();
  *id = req->id;
  return Result::Ok();
}

Result TransferQueue::RunNow(uint64_t peer, Deadline deadline, JobPtr job) {
  auto req = std::make_shared<Request>();
  req->peer = peer;
  req->deadline = deadline;
  req->job = std::move(job);
  std::unique_lock<std::mutex> lock(mu_);
  LDD_RETURN_IF_ERROR(Admit(req));
  std::vector<RequestPtr> batch{req};
  TakeJoinable(req, &batch);
  Result result;
  RunAndFinish(batch, lock, &result);
  return result;
}

void TransferQueue::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  bool just_ran = false;  // a worker that ran a batch takes what queued behind it
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) return;
      // A worker that just ran looks for the next request a little before
      // it sleeps: a caller keeping requests in flight submits again within
      // microseconds, and a sleeping worker costs a wake-up (a system call
      // and a context switch on both sides) per transfer.
      // (It looks again from the top either way: Stop may have come.)
      if (just_ran) {
        just_ran = SpinForWork(lock);
        continue;
      }
      cv_.wait(lock);
      continue;
    }
    const auto overdue_at = queue_.front()->queued_at + kTakeOverAfter;
    if (!just_ran && !wake_pending_ && !stopping_ && std::chrono::steady_clock::now() < overdue_at) {
      // Left for a running transfer to take when it ends. One idle worker
      // watches, in case that transfer is slow or stuck (a frozen peer).
      if (watching_) {
        cv_.wait(lock);
      } else {
        watching_ = true;
        cv_.wait_until(lock, overdue_at);
        watching_ = false;
      }
      continue;
    }
    wake_pending_ = false;
    std::vector<RequestPtr> batch{std::move(queue_.front())};
    queue_.pop_front();
    queued_bytes_ -= batch[0]->job->bytes();
    TakeJoinable(batch[0], &batch);
    RunAndFinish(batch, lock, nullptr);
    just_ran = true;
  }
}

namespace {
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

bool TransferQueue::SpinForWork(std::unique_lock<std::mutex>& lock) {
  const uint64_t seen = submitted_.load(std::memory_order_relaxed);
  ++spinning_;
  lock.unlock();
  const auto until = std::chrono::steady_clock::now() + kSpinFor;
  for (int i = 0; submitted_.load(std::memory_order_acquire) == seen; ++i) {
    CpuRelax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) break;
  }
  lock.lock();
  --spinning_;
  return !queue_.empty();
}

void TransferQueue::RunAndFinish(const std::vector<RequestPtr>& batch, std::unique_lock<std::mutex>& lock,
                                 Result* first_result) {
  uint64_t bytes = 0;
  for (const auto& req : batch) bytes += req->job->bytes();
  ++running_;
  running_bytes_ += bytes;
  if (!queue_.empty()) MaybeWake();
  lock.unlock();
  const std::vector<Result> results = RunBatch(batch);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->job->Report(results[i]);
    batch[i]->job.reset();  // what it holds (peer, op lists, meter) goes now
  }
  lock.lock();
  --running_;
  running_bytes_ -= bytes;
  // A caller's transfer ends here, not in a worker's loop: hand on what queued.
  if (first_result != nullptr && !queue_.empty()) MaybeWake();
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->status = StatusOf(results[i]);
    // An asynchronous request's status carries no message: log it.
    if (!results[i].ok() && (i > 0 || first_result == nullptr))
      LDD_LOG(Warn) << "asynchronous request " << batch[i]->id << " to cluster " << batch[i]->peer << ": "
                    << results[i].message();
    Finished(*batch[i]);
  }
  if (first_result != nullptr) *first_result = results[0];
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
    cv_.notify_one();
  } else if (!watching_) {
    cv_.notify_one();  // an idle worker starts watching the queue's front
  }
}

void TransferQueue::TakeJoinable(RequestPtr first, std::vector<RequestPtr>* batch) {
  // `first` by value: it is batch's first element, and batch grows.
  if (first->deadline.Expired()) return;
  size_t ops = first->job->ops();
  uint64_t bytes = first->job->bytes();
  size_t looked = 0;
  for (auto it = queue_.begin(); it != queue_.end() && batch->size() < join_.requests && looked < join_.scan;
       ++looked) {
    const Request& r = **it;
    if (r.deadline.Expired() || !first->job->CanJoin(*r.job) || ops + r.job->ops() > join_.ops ||
        bytes + r.job->bytes() > join_.bytes) {
      ++it;
      continue;
    }
    ops += r.job->ops();
    bytes += r.job->bytes();
    queued_bytes_ -= r.job->bytes();
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
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_.find(id);
  if (it == requests_.end()) return Result::ParamInvalid(Msg("no asynchronous request ", id, " (finished ones are released when queried)"));
  *status = it->second->status;
  if (*status != RequestStatus::kWaiting) requests_.erase(it);
  return Result::Ok();
}

void TransferQueue::Query(size_t max, bool skip_waiting, std::vector<RequestResult>* results) {
  results->clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = requests_.begin(); it != requests_.end() && results->size() < max;) {
    const Request& req = *it->second;
    if (req.status == RequestStatus::kWaiting && skip_waiting) {
      ++it;
      continue;
    }
    results->push_back({req.id, req.user_data, req.status});
    it = req.status == RequestStatus::kWaiting ? std::next(it) : requests_.erase(it);
  }
}

void TransferQueue::FailPeer(uint64_t peer) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->peer == peer) {
      queued_bytes_ -= (*it)->job->bytes();
      (*it)->status = RequestStatus::kFailed;
      (*it)->job.reset();
      Finished(**it);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

void TransferQueue::Finished(const Request& req) {
  auto it = unfinished_.find(req.peer);
  if (it == unfinished_.end()) return;
  it->second.erase(req.id);
  if (it->second.empty()) unfinished_.erase(it);
  finished_.notify_all();
}

Result TransferQueue::WaitPeer(uint64_t peer, Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t last = next_id_ - 1;  // requests submitted later do not count
  const bool done = finished_.wait_until(lock, deadline.when(), [&] {
    auto it = unfinished_.find(peer);
    return it == unfinished_.end() || *it->second.begin() > last;
  });
  return done ? Result::Ok() : Result::Timeout(Msg("earlier requests to cluster ", peer, " did not finish in time"));
}

void TransferQueue::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& req : queue_) {
      req->status = RequestStatus::kFailed;
      req->job.reset();
      Finished(*req);
    }
    queue_.clear();
    queued_bytes_ = 0;
    cv_.notify_all();
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace lldd
