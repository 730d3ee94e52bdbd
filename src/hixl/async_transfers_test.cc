#include "hixl/async_transfers.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace lldd::hixl_impl {
namespace {

using ::hixl::TransferStatus;

// What the jobs saw: how many transfers ran, and how many requests each
// carried. A gate holds every transfer until it is opened.
struct Log {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::vector<size_t> runs;  // requests per transfer, in run order
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
class FakeJob : public AsyncJob {
 public:
  FakeJob(Log* log, int group, int bad, size_t parts = 1) : log_(log), group_(group), bad_(bad), parts_(parts) {}
  Result Run(Deadline) const override {
    log_->WaitOpen();
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->runs.push_back(parts_);
    return bad_ > 0 ? Result::Failed("a bad range") : Result::Ok();
  }
  bool CanJoin(const AsyncJob& other) const override {
    return static_cast<const FakeJob&>(other).group_ == group_;
  }
  std::unique_ptr<AsyncJob> Join(const std::vector<const AsyncJob*>& jobs) const override {
    int bad = 0;
    size_t parts = 0;
    for (const AsyncJob* j : jobs) {
      bad += static_cast<const FakeJob*>(j)->bad_;
      parts += static_cast<const FakeJob*>(j)->parts_;
    }
    return std::make_unique<FakeJob>(log_, group_, bad, parts);
  }
  size_t ops() const override { return parts_; }
  uint64_t bytes() const override { return 4096 * parts_; }

 private:
  Log* log_;
  int group_;
  int bad_;
  size_t parts_;
};

TransferStatus WaitDone(AsyncTransfers& t, uint64_t id) {
  for (;;) {
    TransferStatus s = TransferStatus::WAITING;
    EXPECT_TRUE(t.Status(id, &s).ok());
    if (s != TransferStatus::WAITING) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// One worker busy on the first request while 20 more queue behind it:
// the next transfer carries all 20 that can join, the odd group its own.
TEST(AsyncTransfersTest, RequestsQueuedBehindABusyWorkerGoAsOneTransfer) {
  Log log;
  AsyncTransfers t(1, 1024);
  std::vector<uint64_t> ids(22);
  ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[0]).ok());
  log.WaitStarted(1);
  for (size_t i = 1; i < 21; ++i)
    ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[i]).ok());
  ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 2, 0), &ids[21]).ok());
  log.Open();
  for (uint64_t id : ids) EXPECT_EQ(WaitDone(t, id), TransferStatus::COMPLETED);
  std::lock_guard<std::mutex> lock(log.mu);
  EXPECT_EQ(log.runs, (std::vector<size_t>{1, 20, 1}));
}

// A joined transfer that fails is run again request by request: only the
// request that caused it fails.
TEST(AsyncTransfersTest, AFailedJoinedTransferFailsOnlyTheRequestThatCausedIt) {
  Log log;
  AsyncTransfers t(1, 1024);
  uint64_t blocker, good1, bad, good2;
  ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &blocker).ok());
  log.WaitStarted(1);
  ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &good1).ok());
  ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 1), &bad).ok());
  ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &good2).ok());
  log.Open();
  EXPECT_EQ(WaitDone(t, blocker), TransferStatus::COMPLETED);
  EXPECT_EQ(WaitDone(t, good1), TransferStatus::COMPLETED);
  EXPECT_EQ(WaitDone(t, bad), TransferStatus::FAILED);
  EXPECT_EQ(WaitDone(t, good2), TransferStatus::COMPLETED);
  std::lock_guard<std::mutex> lock(log.mu);
  EXPECT_EQ(log.runs, (std::vector<size_t>{1, 3, 1, 1, 1}));  // the joined three, then each alone
}

// The join limits hold: at most `requests` per transfer; a request whose
// deadline passed in the queue is not joined, and ends TIMEOUT unstarted.
TEST(AsyncTransfersTest, JoinsStayWithinTheLimitsAndSkipExpiredRequests) {
  Log log;
  JoinLimits limits;
  limits.requests = 4;
  AsyncTransfers t(1, 1024, limits);
  std::vector<uint64_t> ids(10);
  ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[0]).ok());
  log.WaitStarted(1);
  uint64_t expired;
  ASSERT_TRUE(
      t.Submit("p", nullptr, Deadline::AfterMillis(0), std::make_shared<FakeJob>(&log, 1, 0), &expired).ok());
  for (size_t i = 1; i < ids.size(); ++i)
    ASSERT_TRUE(t.Submit("p", nullptr, Deadline::Never(), std::make_shared<FakeJob>(&log, 1, 0), &ids[i]).ok());
  log.Open();
  for (uint64_t id : ids) EXPECT_EQ(WaitDone(t, id), TransferStatus::COMPLETED);
  EXPECT_EQ(WaitDone(t, expired), TransferStatus::TIMEOUT);
  std::lock_guard<std::mutex> lock(log.mu);
  EXPECT_EQ(log.runs, (std::vector<size_t>{1, 4, 4, 1}));
}

}  // namespace
}  // namespace lldd::hixl_impl
