// A bounded wait for tests: a test that waits for something that never
// happens must fail with a message, not hang until ctest kills it.
#ifndef LLM_DATADIST_TESTS_WAIT_UNTIL_H_
#define LLM_DATADIST_TESTS_WAIT_UNTIL_H_

#include <chrono>
#include <thread>

namespace lldd_test {

// Under a sanitizer, code runs 5-20x slower: tests that move a lot of
// bytes or repeat many times scale themselves down (CI's time budget), but
// never below what their claim needs.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// ThreadSanitizer cannot follow a child forked from a threaded process that
// then starts threads of its own (it aborts: "dup thread with used id"), so
// tests of such children skip under it; AddressSanitizer runs them.
#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitized = true;
#else
constexpr bool kThreadSanitized = false;
#endif

// Far longer than any wait in a passing test takes, even on a loaded CI
// machine or under a sanitizer: it only turns a hang into a failure.
constexpr std::chrono::seconds kTestWaitLimit{60};

// Polls `done` until it returns true (then true) or `limit` has passed
// (then false). Yields first and sleeps later, so that short waits stay
// short and long ones do not burn a core.
template <typename Predicate>
bool WaitUntil(Predicate done, std::chrono::milliseconds limit = kTestWaitLimit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (int spins = 0; !done(); ++spins) {
    if (std::chrono::steady_clock::now() >= end) return done();
    if (spins < 1000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return true;
}

}  // namespace lldd_test

#endif  // LLM_DATADIST_TESTS_WAIT_UNTIL_H_
