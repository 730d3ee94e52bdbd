#include "hixl/async_transfers.h"

namespace lldd::hixl_impl {

using ::hixl::TransferStatus;

AsyncTransfers::AsyncTransfers(uint32_t threads, size_t max_requests, JoinLimits join)
    : max_requests_(max_requests), join_(join) {
  for (uint32_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

TransferStatus AsyncTransfers::StatusOf(const Result& r) {
  if (r.ok()) return TransferStatus::COMPLETED;
  return r.code() == llm_datadist::LLM_TIMEOUT ? TransferStatus::TIMEOUT : TransferStatus::FAILED;
}

Result AsyncTransfers::Submit(const std::string& peer, const void* user_data, Deadline deadline, JobPtr job,
                              uint64_t* id) {
  auto req = std::make_shared<Request>();
  req->peer = peer;
  req->user_data = user_data;
  req->deadline = deadline;
  req->job = std::move(job);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return Result::Failed("the engine is finalizing");
  if (requests_.size() >= max_requests_)
    return Result::OutOfMemory(Msg(requests_.size(), " asynchronous requests are outstanding, the most there may be;"
                                   " query their status (which releases finished ones) first"));
  req->id = next_id_++;
  requests_[req->id] = req;
  queue_.push_back(req);
  unfinished_[peer].insert(req->id);
  // One wake per burst: the worker that takes the first request joins what
  // queued behind it, and wakes the next worker if anything is left.
  if (queue_.size() == 1) cv_.notify_one();
  *id = req->id;
  return Result::Ok();
}

void AsyncTransfers::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left to run
    std::vector<RequestPtr> batch{std::move(queue_.front())};
    queue_.pop_front();
    TakeJoinable(batch[0], &batch);
    if (!queue_.empty()) cv_.notify_one();
    lock.unlock();
    const std::vector<Result> results = RunBatch(batch);
    for (auto& req : batch) req->job.reset();  // what it holds (peer, op lists) goes now
    lock.lock();
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i]->status = StatusOf(results[i]);
      Finished(*batch[i]);
    }
  }
}

void AsyncTransfers::TakeJoinable(RequestPtr first, std::vector<RequestPtr>* batch) {
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
    batch->push_back(std::move(*it));
    it = queue_.erase(it);
  }
}

Result AsyncTransfers::RunAlone(const Request& req) {
  // A request whose deadline passed in the queue never starts.
  return req.deadline.Expired() ? Result::Timeout("the request waited past its deadline") : req.job->Run(req.deadline);
}

std::vector<Result> AsyncTransfers::RunBatch(const std::vector<RequestPtr>& batch) {
  if (batch.size() == 1) return {RunAlone(*batch[0])};
  std::vector<const AsyncJob*> jobs;
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

Result AsyncTransfers::Status(uint64_t id, TransferStatus* status) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_.find(id);
  if (it == requests_.end()) return Result::ParamInvalid(Msg("no asynchronous request ", id, " (finished ones are released when queried)"));
  *status = it->second->status;
  if (*status != TransferStatus::WAITING) requests_.erase(it);
  return Result::Ok();
}

void AsyncTransfers::Query(const ::hixl::GetTransferStatusArgs& args, std::vector<::hixl::TransferResult>* results) {
  results->clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = requests_.begin(); it != requests_.end() && results->size() < args.max_query_count;) {
    const Request& req = *it->second;
    if (req.status == TransferStatus::WAITING && args.skip_waiting) {
      ++it;
      continue;
    }
    ::hixl::TransferResult r;
    r.req = reinterpret_cast<::hixl::TransferReq>(static_cast<uintptr_t>(req.id));
    r.user_data = req.user_data;
    r.status = req.status;
    results->push_back(r);
    it = req.status == TransferStatus::WAITING ? std::next(it) : requests_.erase(it);
  }
}

void AsyncTransfers::FailPeer(const std::string& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->peer == peer) {
      (*it)->status = TransferStatus::FAILED;
      (*it)->job.reset();
      Finished(**it);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

void AsyncTransfers::Finished(const Request& req) {
  auto it = unfinished_.find(req.peer);
  if (it == unfinished_.end()) return;
  it->second.erase(req.id);
  if (it->second.empty()) unfinished_.erase(it);
  finished_.notify_all();
}

Result AsyncTransfers::WaitPeer(const std::string& peer, Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t last = next_id_ - 1;  // requests submitted later do not count
  const bool done = finished_.wait_until(lock, deadline.when(), [&] {
    auto it = unfinished_.find(peer);
    return it == unfinished_.end() || *it->second.begin() > last;
  });
  return done ? Result::Ok() : Result::Timeout(Msg("earlier requests to ", peer, " did not finish in time"));
}

void AsyncTransfers::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& req : queue_) {
      req->status = TransferStatus::FAILED;
      req->job.reset();
      Finished(*req);
    }
    queue_.clear();
    cv_.notify_all();
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace lldd::hixl_impl
