// The engine's transfer requests: every transfer of either front end is a
// request here. Asynchronous ones (HIXL's TransferAsync) get a handle and
// run on a fixed pool of worker threads (no thread per request, started on
// the first such request); synchronous ones (LLM-DataDist's Pull*/Push*,
// HIXL's TransferSync) run on the caller's thread through RunNow, so they
// cost no thread hop, but follow the same rules.
//
// The rules: each request has its own deadline; one whose deadline passed
// before it started never starts (TIMEOUT), and the data paths guarantee
// that no byte lands after a TIMEOUT is reported. Whoever runs a request
// (worker or caller) takes the queued asynchronous requests that can go
// with it (same peer, direction and memory kinds: TransferJob::CanJoin)
// into one transfer, so many small requests in flight cost one round trip
// rather than one each; if a joined transfer fails, each request still
// unexpired runs again alone, so a failure stays with the request that
// caused it. FailPeer fails a peer's queued requests at once (its running
// ones fail as its link closes); WaitPeer waits for every request to a
// peer submitted so far, synchronous ones included. An asynchronous
// request's terminal status is reported once, then its handle is released,
// as the vendor documents. Thread-safe.
//
// How the workers share the work, so that a stream of small requests costs
// no system call per request: the worker that ran a transfer takes what
// queued meanwhile (first waiting up to kLinger while callers holding
// several handles keep submitting), or spins briefly for the next
// submission; one idle worker watches on a timer and takes over a request
// that waited kTakeOverAfter behind a slow or stuck transfer; the others
// sleep until there is enough work to share (kShareBytes).
#ifndef LLM_DATADIST_SRC_ENGINE_TRANSFER_QUEUE_H_
#define LLM_DATADIST_SRC_ENGINE_TRANSFER_QUEUE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "engine/handle_table.h"

namespace lldd {

// One request's work, as a front end planned it.
class TransferJob {
 public:
  virtual ~TransferJob() = default;
  virtual Result Run(Deadline deadline) const = 0;
  virtual bool CanJoin(const TransferJob& other) const = 0;
  // One job doing all of `jobs` (each CanJoin the first), in their order.
  virtual std::unique_ptr<TransferJob> Join(const std::vector<const TransferJob*>& jobs) const = 0;
  virtual size_t ops() const = 0;
  virtual uint64_t bytes() const = 0;
  // The request starts on a data path now (alone or in a join), on the
  // thread that runs it.
  virtual void Started() const {}
  // The request's own outcome, once it ran (in a join too), before the
  // queue lets go of the job.
  virtual void Report(const Result& /*result*/) const {}
};

// Bounds of a joined transfer, so that joining never makes one request
// wait behind a very large one. 8 MiB, not more: a data path divides the
// link's connections among the transfers running at its start, so one
// huge join would keep a share of them for its whole length while a
// second worker sat idle; joins of 8 MiB let two workers alternate.
struct JoinLimits {
  size_t requests = 256;
  size_t ops = 4096;
  uint64_t bytes = 8ULL << 20;
  size_t scan = 1024;  // queued requests looked at per join
};

enum class RequestStatus { kWaiting, kCompleted, kTimeout, kFailed };

struct RequestResult {
  uint64_t id = 0;
  const void* user_data = nullptr;
  RequestStatus status = RequestStatus::kWaiting;
};

class TransferQueue {
 public:
  using JobPtr = std::shared_ptr<const TransferJob>;

  // `threads`: workers for asynchronous requests; `max_requests`:
  // outstanding handles at most (OUT_OF_MEMORY beyond).
  TransferQueue(uint32_t threads, size_t max_requests, JoinLimits join = {});
  ~TransferQueue() { Stop(); }

  // Accepts requests again after a Stop (the engine initialized again).
  void Start();
  // An asynchronous request to `peer` (a cluster id); its handle in `id`.
  // `now`, if set: the caller's reading of the clock, taken just before.
  Result Submit(uint64_t peer, const void* user_data, Deadline deadline, JobPtr job, uint64_t* id,
                std::chrono::steady_clock::time_point now = {});
  // A synchronous request, run on this thread; its result.
  Result RunNow(uint64_t peer, Deadline deadline, JobPtr job);
  // PARAM_INVALID for an unknown (or already released) handle.
  Result Status(uint64_t id, RequestStatus* status);
  // Up to `max` handles in id order (skipping WAITING ones if asked);
  // finished ones are released.
  void Query(size_t max, bool skip_waiting, std::vector<RequestResult>* results);
  void FailPeer(uint64_t peer);
  // Waits until every request to `peer` submitted so far has finished
  // (TIMEOUT if the deadline comes first): what a notification orders after.
  Result WaitPeer(uint64_t peer, Deadline deadline);
  // Fails what is queued and waits for the workers; later requests fail
  // until Start.
  void Stop();

 private:
  struct Request {
    uint64_t id = 0;
    uint64_t peer = 0;
    const void* user_data = nullptr;
    Deadline deadline = Deadline::Never();
    std::chrono::steady_clock::time_point queued_at;
    JobPtr job;
    size_t ops = 0;  // job->ops() and job->bytes(), read without a virtual call while the queue is locked
    uint64_t bytes = 0;
    std::atomic<RequestStatus> status{RequestStatus::kWaiting};  // set once, before Finished; read under handles_mu_
    bool async = false;
  };
  using RequestPtr = std::shared_ptr<Request>;
  static RequestPtr NewRequest(uint64_t peer, Deadline deadline, JobPtr job);
  void Work();
  // Sleeps as the watcher or on cv_ until woken (mu_ held; Work's).
  void Sleep(std::unique_lock<std::mutex>& lock);
  // Wakes a worker if the queue's work needs one (mu_ held).
  void MaybeWake();
  // The queue's front has waited kTakeOverAfter (mu_ held, queue not empty).
  bool FrontOverdue() const;
  // Sleeps as the watcher until the queue's front is overdue, a wake for
  // queued work is pending, or the queue stops (mu_ held).
  void Watch(std::unique_lock<std::mutex>& lock);
  // Waits up to kSpinFor, without the lock and without sleeping, for a
  // request to be submitted; true if the queue then holds one.
  bool SpinForWork(std::unique_lock<std::mutex>& lock);
  // Callers hold several handles but few are queued: more are coming.
  bool Streaming() const;
  // Waits without the lock, up to kLinger, while requests keep being
  // submitted (kQuietGap apart at most).
  void Linger(std::unique_lock<std::mutex>& lock);
  // Moves what the inbox holds into queue_ (mu_ held). With `sync` (a
  // request run by its caller), gives it the next id in the same step, so
  // that each peer's unfinished ids stay sorted. Returns the id the next
  // request will get.
  uint64_t TakeInbox(Request* sync = nullptr);
  // Moves the queued requests that can join `first` into `batch` (mu_ held).
  void TakeJoinable(RequestPtr first, std::vector<RequestPtr>* batch);
  // Runs `batch` (mu_ not held) and records each request's status.
  void RunAndFinish(std::vector<RequestPtr>& batch, std::unique_lock<std::mutex>& lock, Result* first_result);
  // One result per request of `batch`.
  static std::vector<Result> RunBatch(const std::vector<RequestPtr>& batch);
  static Result RunAlone(const Request& req);
  // The bookkeeping of finished requests (mu_ held): one lookup per peer
  // and one wake-up of WaitPeer for all of them.
  void Finished(const std::vector<RequestPtr>& reqs);
  static RequestStatus StatusOf(const Result& r);
  // A worker's finished requests (moved out of `batch`), which the callers
  // free with their jobs (DropRetired, with no lock held).
  void Retire(std::vector<RequestPtr>& batch);
  void DropRetired();

  const uint32_t threads_wanted_;
  const size_t max_requests_;
  const JoinLimits join_;
  std::mutex mu_;
  std::condition_variable cv_;
  // Lock order: mu_, then handles_mu_.
  std::mutex handles_mu_;
  HandleTable<RequestPtr> requests_;          // every unreleased asynchronous handle (handles_mu_)
  std::atomic<size_t> handles_{0};           // requests_.size(), read without the lock
  // Apart from handles_mu_: a caller polling its handles then takes a lock
  // that only callers take (its line stays on their core), and this one
  // only when a worker retired something since. Taken alone, or under mu_
  // (Retire).
  std::mutex retired_mu_;
  std::vector<RequestPtr> retired_;          // requests a worker finished, their jobs not yet freed (retired_mu_)
  std::atomic<bool> any_retired_{false};     // retired_ is not empty (set under retired_mu_)
  std::deque<RequestPtr> queue_;             // asynchronous, not yet started
  // Submissions land in the inbox under inbox_mu_ alone, held for a push,
  // so a caller streaming small requests does not wait for the workers'
  // bookkeeping under mu_ (nor they for it). Whoever looks at queue_ first
  // moves the inbox into it (TakeInbox). A submission while a worker is
  // bound to look (takers_ > 0: it runs, lingers or spins, and drains the
  // inbox before it sleeps) wakes nobody; otherwise the caller takes mu_
  // and does what MaybeWake says. Lock order: mu_ or handles_mu_, then
  // inbox_mu_.
  std::mutex inbox_mu_;
  std::vector<RequestPtr> inbox_;        // (inbox_mu_)
  uint64_t inbox_bytes_ = 0;             // (inbox_mu_)
  bool inbox_closed_ = false;            // stopped (inbox_mu_)
  uint64_t next_id_ = 1;                 // (inbox_mu_)
  std::vector<RequestPtr> inbox_taken_;  // the inbox's other storage, swapped in when it is taken (mu_)
  uint64_t taken_ = 0;                   // submissions moved to queue_ (mu_)
  std::atomic<int> takers_{0};           // workers bound to drain the inbox before they sleep
  std::atomic<bool> sharing_wanted_{false};  // running_bytes_ >= kShareBytes, read without mu_
  std::map<uint64_t, std::vector<uint64_t>> unfinished_;  // request ids per peer, not yet finished, sorted
  static constexpr size_t kKeptPeerLists = 64;
  std::condition_variable finished_;
  bool stopping_ = false;
  // Work running now and waiting: what MaybeWake judges by. A transfer
  // stripes itself over the data path (connections, copy threads), so a
  // second worker pays off only when there is much to share.
  static constexpr uint64_t kShareBytes = 8ULL << 20;
  size_t running_ = 0;
  uint64_t running_bytes_ = 0;
  uint64_t queued_bytes_ = 0;
  bool wake_pending_ = false;  // a worker was woken and has not taken its batch yet
  bool watching_ = false;                 // an idle worker watches the queue's front (Watch)
  std::condition_variable watch_cv_;      // the watcher sleeps here, the other idle workers on cv_
  size_t async_unfinished_ = 0;           // asynchronous requests not finished: the watcher's timer runs
  std::atomic<bool> watcher_asleep_{false};  // the watcher sleeps untimed (nothing outstanding for a while)
  size_t spinning_ = 0;                   // workers in SpinForWork or Linger: they take what comes
  size_t idle_ = 0;                       // workers asleep on cv_
  std::atomic<uint64_t> submitted_{0};    // asynchronous requests ever put in the inbox (inbox_mu_ held)
  static constexpr std::chrono::microseconds kSpinFor{20};
  static constexpr std::chrono::microseconds kLinger{10};
  static constexpr std::chrono::nanoseconds kQuietGap{1500};
  static constexpr std::chrono::milliseconds kWatchWhileQuiet{100};
  // How long a queued request waits for a running transfer to take it
  // before an idle worker does.
  static constexpr std::chrono::microseconds kTakeOverAfter{1000};
  std::vector<std::thread> threads_;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_TRANSFER_QUEUE_H_
