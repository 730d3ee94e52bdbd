// The requests of TransferAsync: a table of handles and a fixed pool of
// worker threads that runs them (no thread per request), each against its
// own deadline. A request's status is WAITING until its transfer returns,
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

class AsyncTransfers {
 public:
  using Run = std::function<Result(Deadline)>;

  // `max_requests`: outstanding handles at most (RESOURCE_EXHAUSTED beyond).
  AsyncTransfers(uint32_t threads, size_t max_requests);
  ~AsyncTransfers() { Stop(); }

  Result Submit(const std::string& peer, const void* user_data, Deadline deadline, Run run, uint64_t* id);
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
    Run run;
    ::hixl::TransferStatus status = ::hixl::TransferStatus::WAITING;
  };
  using RequestPtr = std::shared_ptr<Request>;
  void Work();
  void Finished(const Request& req);  // with mu_ held
  static ::hixl::TransferStatus StatusOf(const Result& r);

  const size_t max_requests_;
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
