#include "engine/transfer_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace lldd {
namespace {


// What the jobs saw: how many transfers ran, and how many requests each
// carried. A gate holds every transfer until it is opened.
struct Log {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::vector<size_t> runs;  // requests per transfer, in run order
  std::vector<uint32_t> reports;  // outcomes the queue reported to jobs
  int started = 0;

  void WaitOpen() {
    std::unique_lock<std::mutex> lock(mu);
    ++started;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
  void WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return started >= n; });
  }
};

// A job of `parts` requests (1 unless joined); it fails if any part is
// bad, as a transfer with one bad range fails whole.
class FakeJob : public TransferJob {
 public:
  FakeJob(Log* log, int group, int bad, size_t parts = 1) : log_(log), group_(group), bad_(bad), parts_(parts) {}
  Result Run(Deadline) const override {
    log_->WaitOpen();
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->runs.push_back(parts_);
    return bad_ > 0 ? Result::Failed("a bad range") : Result::Ok();
  }
  bool CanJoin(const TransferJob& other) const override {
    return static_cast<const FakeJob&>(other).group_ == group_;
  }
  std::unique_ptr<TransferJob> Join(const std::vector<const TransferJob*>& jobs) const override {
    int bad = 0;
    size_t parts = 0;
    for (const TransferJob* j : jobs) {
      bad += static_cast<const FakeJob*>(j)->bad_;
      parts += static_cast<const FakeJob*>(j)->parts_;
    }
    return std::make_unique<FakeJob>(log_, group_, bad, parts);
  }
  size_t ops() const override { return parts_; }
  uint64_t bytes() const override { return 4096 * parts_; }
  void Report(const Result& r) const override {
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->reports.push_back(r.code());
  }

 private:
  Log* log_;
  int group_;
  int bad_;
  size_t parts_;
};

RequestStatus WaitDone(TransferQueue& t, uint64_t id) {
  for (;;) {
    RequestStatus s = RequestStatus::kWaiting;
    EXPECT_TRUE(t.Status(id, &s).ok());
    if (s != RequestStatus::kWaiting) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// One worker busy on the first request while 20 more queue behind it:
// the next transfer carries all 20 that can join, the odd group its own.
TEST(TransferQueueTest, RequestsQueuedBehindABusyWorkerGoAsOneTransfer) {
  Log log;
  TransferQueue t(1, 1024);
  std::vector<uint64_t> ids(22);
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[0]).ok());
  log.WaitStarted(1);
  for (size_t i = 1; i < 21; ++i)
    ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[i]).ok());
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 2, 0), &ids[21]).ok());
  log.Open();
  for (uint64_t id : ids) EXPECT_EQ(WaitDone(t, id), RequestStatus::kCompleted);
  std::lock_guard<std::mutex> lock(log.mu);
  EXPECT_EQ(log.runs, (std::vector<size_t>{1, 20, 1}));
}

// A joined transfer that fails is run again request by request: only the
// request that caused it fails.
TEST(TransferQueueTest, AFailedJoinedTransferFailsOnlyTheRequestThatCausedIt) {
  Log log;
  TransferQueue t(1, 1024);
  uint64_t blocker, good1, bad, good2;
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &blocker).ok());
  log.WaitStarted(1);
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &good1).ok());
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 1), &bad).ok());
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &good2).ok());
  log.Open();
  EXPECT_EQ(WaitDone(t, blocker), RequestStatus::kCompleted);
  EXPECT_EQ(WaitDone(t, good1), RequestStatus::kCompleted);
  EXPECT_EQ(WaitDone(t, bad), RequestStatus::kFailed);
  EXPECT_EQ(WaitDone(t, good2), RequestStatus::kCompleted);
  std::lock_guard<std::mutex> lock(log.mu);
  EXPECT_EQ(log.runs, (std::vector<size_t>{1, 3, 1, 1, 1}));  // the joined three, then each alone
}

// The join limits hold: at most `requests` per transfer; a request whose
// deadline passed in the queue is not joined, and ends TIMEOUT unstarted.
TEST(TransferQueueTest, JoinsStayWithinTheLimitsAndSkipExpiredRequests) {
  Log log;
  JoinLimits limits;
  limits.requests = 4;
  TransferQueue t(1, 1024, limits);
  std::vector<uint64_t> ids(10);
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[0]).ok());
  log.WaitStarted(1);
  uint64_t expired;
  ASSERT_TRUE(
      t.Submit(7, nullptr, Deadline::AfterMillis(0), std::make_shared<FakeJob>(&log, 1, 0), &expired).ok());
  for (size_t i = 1; i < ids.size(); ++i)
    ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[i]).ok());
  log.Open();
  for (uint64_t id : ids) EXPECT_EQ(WaitDone(t, id), RequestStatus::kCompleted);
  EXPECT_EQ(WaitDone(t, expired), RequestStatus::kTimeout);
  std::lock_guard<std::mutex> lock(log.mu);
  EXPECT_EQ(log.runs, (std::vector<size_t>{1, 4, 4, 1}));
}

// Small requests queued behind a running transfer wait for it to take
// them, but not forever: a transfer stuck on one peer (a frozen process)
// does not hold up requests to another, an idle worker takes them.
TEST(TransferQueueTest, ARequestBehindAStuckTransferIsTakenByAnIdleWorker) {
  Log stuck;
  Log free;
  free.Open();
  TransferQueue t(2, 1024);
  uint64_t blocked, other;
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&stuck, 1, 0), &blocked).ok());
  stuck.WaitStarted(1);
  ASSERT_TRUE(t.Submit(8, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&free, 2, 0), &other).ok());
  EXPECT_EQ(WaitDone(t, other), RequestStatus::kCompleted);
  RequestStatus s = RequestStatus::kCompleted;
  ASSERT_TRUE(t.Status(blocked, &s).ok());
  EXPECT_EQ(s, RequestStatus::kWaiting);
  stuck.Open();
  EXPECT_EQ(WaitDone(t, blocked), RequestStatus::kCompleted);
}

// A synchronous request runs on the caller's thread, takes the queued
// asynchronous requests that can go with it, returns its own result, and
// counts for WaitPeer like any other; after Stop, requests fail until
// Start.
TEST(TransferQueueTest, RunNowJoinsQueuedRequestsAndFollowsTheSameRules) {
  Log log;
  TransferQueue t(1, 1024);
  uint64_t blocker, queued1, queued2;
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &blocker).ok());
  log.WaitStarted(1);  // the only worker is busy
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &queued1).ok());
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &queued2).ok());
  // The worker is held, so WaitPeer cannot finish yet.
  EXPECT_EQ(t.WaitPeer(7, Deadline::AfterMillis(20)).code(), llm_datadist::LLM_TIMEOUT);
  std::thread opener([&] {
    log.WaitStarted(2);  // the caller's joined transfer started too
    log.Open();
  });
  const std::thread::id caller = std::this_thread::get_id();
  EXPECT_TRUE(t.RunNow(7, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0)).ok());
  EXPECT_EQ(std::this_thread::get_id(), caller);
  opener.join();
  EXPECT_EQ(WaitDone(t, queued1), RequestStatus::kCompleted);
  EXPECT_EQ(WaitDone(t, queued2), RequestStatus::kCompleted);
  EXPECT_EQ(WaitDone(t, blocker), RequestStatus::kCompleted);
  EXPECT_TRUE(t.WaitPeer(7, Deadline::AfterMillis(5000)).ok());
  {
    std::lock_guard<std::mutex> lock(log.mu);
    std::vector<size_t> runs = log.runs;  // the worker's and the caller's, in either order
    std::sort(runs.begin(), runs.end());
    EXPECT_EQ(runs, (std::vector<size_t>{1, 3}));  // the caller's request carried the two queued
  }
  // Its own failure comes back with its message; an expired one never runs.
  Result bad = t.RunNow(7, Deadline::Never(), std::make_shared<FakeJob>(&log, 2, 1));
  EXPECT_EQ(bad.code(), llm_datadist::LLM_FAILED);
  EXPECT_NE(bad.message().find("a bad range"), std::string::npos) << bad.message();
  EXPECT_EQ(t.RunNow(7, Deadline::AfterMillis(0), std::make_shared<FakeJob>(&log, 2, 0)).code(),
            llm_datadist::LLM_TIMEOUT);
  t.Stop();
  EXPECT_EQ(t.RunNow(7, Deadline::Never(), std::make_shared<FakeJob>(&log, 2, 0)).code(), llm_datadist::LLM_FAILED);
  uint64_t id;
  EXPECT_EQ(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 2, 0), &id).code(),
            llm_datadist::LLM_FAILED);
  t.Start();
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 2, 0), &id).ok());
  EXPECT_EQ(WaitDone(t, id), RequestStatus::kCompleted);
  std::lock_guard<std::mutex> lock(log.mu);
  EXPECT_EQ(log.runs.size(), 4U);  // the expired and the refused requests never ran
}

// At most max_requests outstanding (OUT_OF_MEMORY beyond, until a query
// releases finished ones). Stop (the engine's Finalize) fails every queued
// request at once, while a running one finishes; only requests that ran
// hear their outcome through Report (a meter held by the others ends with
// its default, FAILED, when the job goes).
TEST(TransferQueueTest, OutstandingRequestsAreBoundedAndStopFailsTheQueuedOnes) {
  Log log;
  TransferQueue t(1, 4);
  uint64_t ids[4];
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 0, 0), &ids[0]).ok());
  log.WaitStarted(1);
  for (int i = 1; i < 4; ++i)  // groups that cannot join: each stays queued
    ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, i, 0), &ids[i]).ok());
  uint64_t more = 0;
  Result full = t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 9, 0), &more);
  EXPECT_EQ(full.code(), llm_datadist::LLM_OUT_OF_MEMORY);
  EXPECT_NE(full.message().find("outstanding"), std::string::npos) << full.message();
  std::thread stopper([&] { t.Stop(); });
  for (int i = 1; i < 4; ++i) EXPECT_EQ(WaitDone(t, ids[i]), RequestStatus::kFailed) << i;
  RequestStatus s = RequestStatus::kCompleted;
  ASSERT_TRUE(t.Status(ids[0], &s).ok());
  EXPECT_EQ(s, RequestStatus::kWaiting);  // still held by its transfer
  log.Open();
  stopper.join();
  EXPECT_EQ(WaitDone(t, ids[0]), RequestStatus::kCompleted);
  {
    std::lock_guard<std::mutex> lock(log.mu);
    EXPECT_EQ(log.reports, (std::vector<uint32_t>{llm_datadist::LLM_SUCCESS}));
  }
  EXPECT_EQ(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 0, 0), &more).code(),
            llm_datadist::LLM_FAILED);  // stopped: refused until Start
  // A finished handle, once reported (WaitDone asked each), is released:
  // there is room again.
  t.Start();
  std::vector<RequestResult> results;
  t.Query(16, false, &results);
  EXPECT_TRUE(results.empty());
  EXPECT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 0, 0), &more).ok());
  EXPECT_EQ(WaitDone(t, more), RequestStatus::kCompleted);
}

// A FakeJob that counts the live jobs: what a job holds (its peer, op
// lists, meter) must go once its request finished.
class CountedJob : public FakeJob {
 public:
  CountedJob(Log* log, std::atomic<int>* alive) : FakeJob(log, 0, 0), alive_(alive) { ++*alive_; }
  ~CountedJob() override { --*alive_; }
  bool CanJoin(const TransferJob&) const override { return false; }

 private:
  std::atomic<int>* alive_;
};

// The workers hand finished requests back; the next poll of any handle
// frees their jobs (not the poll of each one's own handle), and so does
// Stop.
TEST(TransferQueueTest, FinishedRequestsLetGoOfTheirJobsAtTheNextPoll) {
  Log log;
  log.Open();
  std::atomic<int> alive{0};
  TransferQueue t(1, 16);
  uint64_t a = 0, b = 0;
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<CountedJob>(&log, &alive), &a).ok());
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<CountedJob>(&log, &alive), &b).ok());
  ASSERT_TRUE(t.WaitPeer(7, Deadline::AfterMillis(10000)).ok());
  EXPECT_EQ(alive.load(), 2);  // finished, handed back, not yet polled
  EXPECT_EQ(WaitDone(t, a), RequestStatus::kCompleted);
  EXPECT_EQ(alive.load(), 0);  // b's too, though b was not asked about
  EXPECT_EQ(WaitDone(t, b), RequestStatus::kCompleted);
  uint64_t c = 0;
  ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<CountedJob>(&log, &alive), &c).ok());
  ASSERT_TRUE(t.WaitPeer(7, Deadline::AfterMillis(10000)).ok());
  t.Stop();
  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(WaitDone(t, c), RequestStatus::kCompleted);
}

// A queue stopped on a thread whose thread-local storage was already
// destroyed (a queue held by a thread-local, or by a static at exit) frees
// its finished requests' jobs without the spare storage that thread had.
TEST(TransferQueueTest, AQueueStoppedAfterItsThreadsLocalsWentStillFreesFinishedJobs) {
  Log log;
  log.Open();
  std::atomic<int> alive{0};
  std::thread([&] {
    // Made before the thread's spare storage, so destroyed after it.
    struct Holder {
      std::unique_ptr<TransferQueue> queue;
      ~Holder() { queue.reset(); }
    };
    thread_local Holder holder;
    holder.queue = std::make_unique<TransferQueue>(1, 16);
    TransferQueue& t = *holder.queue;
    uint64_t a = 0, b = 0;
    ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<CountedJob>(&log, &alive), &a).ok());
    EXPECT_EQ(WaitDone(t, a), RequestStatus::kCompleted);
    ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<CountedJob>(&log, &alive), &b).ok());
    ASSERT_TRUE(t.WaitPeer(7, Deadline::AfterMillis(10000)).ok());
    // A poll that finds a's request already handed back, so that this
    // thread's spare storage exists and holds some.
    RequestStatus s = RequestStatus::kWaiting;
    EXPECT_TRUE(t.Status(b, &s).ok());
    ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<CountedJob>(&log, &alive), &a).ok());
    ASSERT_TRUE(t.WaitPeer(7, Deadline::AfterMillis(10000)).ok());
    EXPECT_EQ(alive.load(), 1);  // finished, handed back, not yet polled
  }).join();
  EXPECT_EQ(alive.load(), 0);
}

// A worker woken for requests that FailPeer (a Disconnect) took before it
// ran finds the queue empty and goes back to sleep: it once spun holding
// the queue's lock, so that nothing more could be submitted and Stop hung.
TEST(TransferQueueTest, WorkersWokenForRequestsFailPeerTookGoBackToSleep) {
  Log log;
  log.Open();
  for (int round = 0; round < 50; ++round) {
    TransferQueue t(2, 1024);
    uint64_t gone = 0, later = 0;
    ASSERT_TRUE(t.Submit(7, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &gone).ok());
    t.FailPeer(7);  // usually before a worker wakes for it
    std::promise<void> submitted;
    std::thread other([&] {
      EXPECT_TRUE(t.Submit(8, nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &later).ok());
      submitted.set_value();
    });
    if (submitted.get_future().wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "round " << round << ": Submit blocked behind a worker holding the queue's lock";
      std::abort();  // the queue cannot be stopped either
    }
    other.join();
    const RequestStatus first = WaitDone(t, gone);
    EXPECT_TRUE(first == RequestStatus::kFailed || first == RequestStatus::kCompleted) << round;
    EXPECT_EQ(WaitDone(t, later), RequestStatus::kCompleted) << round;
    t.Stop();
  }
}

}  // namespace
}  // namespace lldd
