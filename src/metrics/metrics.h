// An instance's counters: transfers per transport and per linked peer,
// links, and admission of new connections. The engine and the acceptor
// record into it; GetStats() and the Prometheus exporter read it.
//
// Cheap on the hot path: a transfer finds two counter sets (its
// transport's and its peer's) under a shared (reader) lock each, bumps
// relaxed atomics, and takes an exclusive lock only if it failed (the
// failures map). Readers see each counter exact but the set only roughly
// at one instant, which is what scraping expects.
#ifndef LLM_DATADIST_SRC_METRICS_METRICS_H_
#define LLM_DATADIST_SRC_METRICS_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "llm_datadist/llm_datadist.h"

namespace lldd::metrics {

using Stats = llm_datadist::LlmDataDist::Stats;
using llm_datadist::Status;

enum Direction : int { kPull = 0, kPush = 1 };

// Transfer latency, in buckets of fixed upper bounds (seconds).
class LatencyHistogram {
 public:
  static constexpr std::array<double, 16> kBounds = {50e-6, 100e-6, 250e-6, 500e-6, 1e-3,  2.5e-3, 5e-3, 10e-3,
                                                     25e-3, 50e-3,  100e-3, 250e-3, 500e-3, 1.0,    2.5,  10.0};
  void Observe(double seconds);
  void SnapshotInto(Stats::Latency* out) const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};  // the last: above every bound
  std::atomic<uint64_t> sum_ns_{0};
};

// Bytes, calls, failures and latency of transfers in both directions.
class TransferCounters {
 public:
  void Record(Direction dir, uint64_t bytes, double seconds, Status status);
  void SnapshotInto(Stats::Transfers* out) const;
  std::atomic<int64_t> in_flight{0};

 private:
  std::array<std::atomic<uint64_t>, 2> bytes_{};
  std::array<std::atomic<uint64_t>, 2> calls_{};
  std::array<LatencyHistogram, 2> latency_;
  mutable std::mutex failures_mu_;
  std::map<Status, uint64_t> failures_;
};

class Registry {
 public:
  // The counters of a transport by name; the reference stays valid for the
  // registry's life.
  TransferCounters& Transport(const std::string& name);
  // The counters of a linked peer; `create`: made if missing (at link
  // time), else null if missing (a call naming a cluster never linked).
  std::shared_ptr<TransferCounters> Peer(uint64_t cluster_id, bool create);
  // Drops a peer's counters once it is unlinked (their number stays
  // bounded by the links an instance has).
  void ForgetPeer(uint64_t cluster_id);
  void ForgetPeers();
  // Everything at once; `links` and `max_links` come from the engine.
  Stats Snapshot() const;

  // One transfer call, from its start: in flight until Finish().
  void Begin(const std::shared_ptr<TransferCounters>& peer);
  void Finish(const std::shared_ptr<TransferCounters>& peer, const char* transport, Direction dir, uint64_t bytes,
              double seconds, Status status);
  // A call that ended without a Begin (it never started): counted, never
  // in flight.
  void Record(const std::shared_ptr<TransferCounters>& peer, const char* transport, Direction dir, uint64_t bytes,
              double seconds, Status status);

  // Links and admission (names as in Stats).
  std::atomic<uint64_t> links_initiated{0};
  std::atomic<uint64_t> links_accepted{0};
  std::atomic<uint64_t> links_closed{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> handshakes_completed{0};
  std::atomic<int64_t> handshakes_pending{0};
  std::atomic<uint64_t> dropped_timeout{0};         // no first frame in time
  std::atomic<uint64_t> dropped_full{0};            // evicted: the table was full
  std::atomic<uint64_t> dropped_source{0};          // evicted: its source had too many pending
  std::atomic<uint64_t> dropped_bad_frame{0};       // first frame malformed or not HELLO
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> max_links{0};
  void RefuseLink(const std::string& reason);

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<TransferCounters>> transports_;
  std::map<uint64_t, std::shared_ptr<TransferCounters>> peers_;
  mutable std::mutex refused_mu_;
  std::map<std::string, uint64_t> refused_;
};

}  // namespace lldd::metrics

#endif  // LLM_DATADIST_SRC_METRICS_METRICS_H_
