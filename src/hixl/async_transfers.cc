#include "hixl/async_transfers.h"

namespace lldd::hixl_impl {

using ::hixl::TransferStatus;

AsyncTransfers::AsyncTransfers(uint32_t threads, size_t max_requests) : max_requests_(max_requests) {
  for (uint32_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

TransferStatus AsyncTransfers::StatusOf(const Result& r) {
  if (r.ok()) return TransferStatus::COMPLETED;
  return r.code() == llm_datadist::LLM_TIMEOUT ? TransferStatus::TIMEOUT : TransferStatus::FAILED;
}

Result AsyncTransfers::Submit(const std::string& peer, const void* user_data, Deadline deadline, Run run,
                              uint64_t* id) {
  auto req = std::make_shared<Request>();
  req->peer = peer;
  req->user_data = user_data;
  req->deadline = deadline;
  req->run = std::move(run);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return Result::Failed("the engine is finalizing");
  if (requests_.size() >= max_requests_)
    return Result::OutOfMemory(Msg(requests_.size(), " asynchronous requests are outstanding, the most there may be;"
                                   " query their status (which releases finished ones) first"));
  req->id = next_id_++;
  requests_[req->id] = req;
  queue_.push_back(req);
  unfinished_[peer].insert(req->id);
  cv_.notify_one();
  *id = req->id;
  return Result::Ok();
}

void AsyncTransfers::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left to run
    RequestPtr req = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    // A request whose deadline passed in the queue never starts.
    const Result r = req->deadline.Expired() ? Result::Timeout("the request waited past its deadline")
                                             : req->run(req->deadline);
    req->run = nullptr;  // what it captured (leases, op lists) goes now
    lock.lock();
    req->status = StatusOf(r);
    Finished(*req);
  }
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
      (*it)->run = nullptr;
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
      req->run = nullptr;
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
