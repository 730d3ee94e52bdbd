#include "metrics/metrics.h"

#include <algorithm>

namespace lldd::metrics {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

}  // namespace

void LatencyHistogram::Observe(double seconds) {
  const auto it = std::lower_bound(kBounds.begin(), kBounds.end(), seconds);
  counts_[static_cast<size_t>(it - kBounds.begin())].fetch_add(1, kRelaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::max(0.0, seconds) * 1e9), kRelaxed);
}

void LatencyHistogram::SnapshotInto(Stats::Latency* out) const {
  out->upper_bounds_seconds.assign(kBounds.begin(), kBounds.end());
  out->counts.clear();
  out->count = 0;
  for (const auto& c : counts_) {
    out->counts.push_back(c.load(kRelaxed));
    out->count += out->counts.back();
  }
  out->sum_seconds = static_cast<double>(sum_ns_.load(kRelaxed)) / 1e9;
}

void TransferCounters::Record(Direction dir, uint64_t bytes, double seconds, Status status) {
  calls_[dir].fetch_add(1, kRelaxed);
  latency_[dir].Observe(seconds);
  if (status == llm_datadist::LLM_SUCCESS) {
    bytes_[dir].fetch_add(bytes, kRelaxed);
  } else {
    std::lock_guard<std::mutex> lock(failures_mu_);
    ++failures_[status];
  }
}

void TransferCounters::SnapshotInto(Stats::Transfers* out) const {
  out->pull_bytes = bytes_[kPull].load(kRelaxed);
  out->push_bytes = bytes_[kPush].load(kRelaxed);
  out->pull_calls = calls_[kPull].load(kRelaxed);
  out->push_calls = calls_[kPush].load(kRelaxed);
  latency_[kPull].SnapshotInto(&out->pull_latency);
  latency_[kPush].SnapshotInto(&out->push_latency);
  out->in_flight = in_flight.load(kRelaxed);
  std::lock_guard<std::mutex> lock(failures_mu_);
  out->failures = failures_;
}

TransferCounters& Registry::Transport(const std::string& name) {
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = transports_.find(name);
    if (it != transports_.end()) return *it->second;
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto& slot = transports_[name];
  if (!slot) slot = std::make_unique<TransferCounters>();
  return *slot;
}

std::shared_ptr<TransferCounters> Registry::Peer(uint64_t cluster_id, bool create) {
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = peers_.find(cluster_id);
    if (it != peers_.end()) return it->second;
    if (!create) return nullptr;
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto& slot = peers_[cluster_id];
  if (!slot) slot = std::make_shared<TransferCounters>();
  return slot;
}

void Registry::ForgetPeer(uint64_t cluster_id) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  peers_.erase(cluster_id);
}

void Registry::ForgetPeers() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  peers_.clear();
}

void Registry::Begin(const std::shared_ptr<TransferCounters>& peer) {
  in_flight.fetch_add(1, kRelaxed);
  if (peer) peer->in_flight.fetch_add(1, kRelaxed);
}

void Registry::Finish(const std::shared_ptr<TransferCounters>& peer, const char* transport, Direction dir,
                      uint64_t bytes, double seconds, Status status) {
  in_flight.fetch_sub(1, kRelaxed);
  if (peer) peer->in_flight.fetch_sub(1, kRelaxed);
  Record(peer, transport, dir, bytes, seconds, status);
}

void Registry::Record(const std::shared_ptr<TransferCounters>& peer, const char* transport, Direction dir,
                      uint64_t bytes, double seconds, Status status) {
  if (peer) peer->Record(dir, bytes, seconds, status);
  if (transport != nullptr && transport[0] != '\0') Transport(transport).Record(dir, bytes, seconds, status);
}

void Registry::RefuseLink(const std::string& reason) {
  std::lock_guard<std::mutex> lock(refused_mu_);
  ++refused_[reason];
}

Stats Registry::Snapshot() const {
  Stats s;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (const auto& [name, c] : transports_) c->SnapshotInto(&s.transports[name]);
    for (const auto& [id, c] : peers_) c->SnapshotInto(&s.peers[id]);
  }
  {
    std::lock_guard<std::mutex> lock(refused_mu_);
    s.links_refused = refused_;
  }
  s.max_links = max_links.load(kRelaxed);
  s.links_initiated = links_initiated.load(kRelaxed);
  s.links_accepted = links_accepted.load(kRelaxed);
  s.links_closed = links_closed.load(kRelaxed);
  s.connections_accepted = connections_accepted.load(kRelaxed);
  s.handshakes_completed = handshakes_completed.load(kRelaxed);
  s.handshakes_pending = handshakes_pending.load(kRelaxed);
  s.handshakes_dropped_timeout = dropped_timeout.load(kRelaxed);
  s.handshakes_dropped_full = dropped_full.load(kRelaxed);
  s.handshakes_dropped_source = dropped_source.load(kRelaxed);
  s.handshakes_dropped_bad_frame = dropped_bad_frame.load(kRelaxed);
  s.in_flight = in_flight.load(kRelaxed);
  return s;
}

}  // namespace lldd::metrics
