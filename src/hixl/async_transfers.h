// The requests of TransferAsync: a table of handles and a fixed pool of
// worker threads that runs them (no thread per request), each against its
// own deadline. A worker that finds requests queued behind the one it
// takes joins those that can go with it (same peer, direction and memory
// kinds: AsyncJob::CanJoin) into one transfer, so many small requests in
// flight cost one round trip rather than one each; if a joined transfer
// fails, each request still unexpired runs again alone, so a failure stays
// with the request that caused it. A request's status is WAITING until its transfer returns,
// then COMPLETED, TIMEOUT (its deadline passed, in the queue or on the
// wire; the data paths guarantee that no byte lands after that) or FAILED.
// Failing a peer (Disconnect) fails its queued requests at once; its
// running ones fail as its link closes. A terminal status is reported
// once, then the handle is released, as the vendor documents. Thread-safe.
#ifndef LLM_DATADIST_SRC_HIXL_ASYNC_TRANSFERS_H_
#define LLM_DATADIST_SRC_HIXL_ASYNC_TRANSFERS_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "hixl/hixl_types.h"

namespace lldd::hixl_impl {

// One request's work, as the front end planned it.
class AsyncJob {
 public:
  virtual ~AsyncJob() = default;
  virtual Result Run(Deadline deadline) const = 0;
  virtual bool CanJoin(const AsyncJob& other) const = 0;
  // One job doing all of `jobs` (each CanJoin the first), in their order.
  virtual std::unique_ptr<AsyncJob> Join(const std::vector<const AsyncJob*>& jobs) const = 0;
  virtual size_t ops() const = 0;
  virtual uint64_t bytes() const = 0;
};

// Bounds of a joined transfer, so that joining never makes one request
// wait behind a very large one.
struct JoinLimits {
  size_t requests = 256;
  size_t ops = 4096;
  uint64_t bytes = 64ULL << 20;
  size_t scan = 1024;  // queued requests looked at per join
};

class AsyncTransfers {
 public:
  using JobPtr = std::shared_ptr<const AsyncJob>;

  // `max_requests`: outstanding handles at most (RESOURCE_EXHAUSTED beyond).
  AsyncTransfers(uint32_t threads, size_t max_requests, JoinLimits join = {});
  ~AsyncTransfers() { Stop(); }

  Result Submit(const std::string& peer, const void* user_data, Deadline deadline, JobPtr job, uint64_t* id);
  // PARAM_INVALID for an unknown (or already released) handle.
  Result Status(uint64_t id, ::hixl::TransferStatus* status);
  void Query(const ::hixl::GetTransferStatusArgs& args, std::vector<::hixl::TransferResult>* results);
  void FailPeer(const std::string& peer);
  // Waits until every request of `peer` submitted so far has finished
  // (TIMEOUT if the deadline comes first): what SendNotify orders after.
  Result WaitPeer(const std::string& peer, Deadline deadline);
  // Fails what is queued and waits for what runs; later Submits fail.
  void Stop();

 private:
  struct Request {
    uint64_t id = 0;
    std::string peer;
    const void* user_data = nullptr;
    Deadline deadline = Deadline::Never();
    JobPtr job;
    ::hixl::TransferStatus status = ::hixl::TransferStatus::WAITING;
  };
  using RequestPtr = std::shared_ptr<Request>;
  void Work();
  // Moves the queued requests that can join `first` into `batch` (mu_ held).
  void TakeJoinable(RequestPtr first, std::vector<RequestPtr>* batch);
  // One result per request of `batch`.
  static std::vector<Result> RunBatch(const std::vector<RequestPtr>& batch);
  static Result RunAlone(const Request& req);
  void Finished(const Request& req);  // with mu_ held
  static ::hixl::TransferStatus StatusOf(const Result& r);

  const size_t max_requests_;
  const JoinLimits join_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, RequestPtr> requests_;  // every unreleased handle
  std::deque<RequestPtr> queue_;             // not yet started
  std::map<std::string, std::set<uint64_t>> unfinished_;  // WAITING request ids per peer
  std::condition_variable finished_;
  uint64_t next_id_ = 1;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace lldd::hixl_impl

#endif  // LLM_DATADIST_SRC_HIXL_ASYNC_TRANSFERS_H_
