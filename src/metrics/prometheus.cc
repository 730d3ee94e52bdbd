#include "metrics/prometheus.h"

#include <cstdio>
#include <sstream>

namespace lldd::metrics {
namespace {

using Stats = llm_datadist::LlmDataDist::Stats;
using llm_datadist::Status;

class Writer {
 public:
  explicit Writer(uint64_t cluster_id) : cluster_(std::to_string(cluster_id)) {}
  // Starts a metric family.
  void Family(const char* name, const char* type, const char* help) {
    out_ << "# HELP llm_datadist_" << name << ' ' << help << "\n# TYPE llm_datadist_" << name << ' ' << type << '\n';
  }
  // One sample; `labels` is "" or `a="x",b="y"` (values we produce need no escaping).
  void Sample(const std::string& name, const std::string& labels, double value) {
    out_ << "llm_datadist_" << name << "{cluster=\"" << cluster_ << '"';
    if (!labels.empty()) out_ << ',' << labels;
    out_ << "} " << Number(value) << '\n';
  }
  void Histogram(const char* name, const std::string& labels, const Stats::Latency& h) {
    uint64_t cumulative = 0;
    const std::string sep = labels.empty() ? "" : ",";
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      const std::string le = i < h.upper_bounds_seconds.size() ? Number(h.upper_bounds_seconds[i]) : "+Inf";
      Sample(std::string(name) + "_bucket", labels + sep + "le=\"" + le + "\"", static_cast<double>(cumulative));
    }
    Sample(std::string(name) + "_sum", labels, h.sum_seconds);
    Sample(std::string(name) + "_count", labels, static_cast<double>(h.count));
  }
  std::string str() const { return out_.str(); }

  static std::string Number(double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
  }

 private:
  std::string cluster_;
  std::ostringstream out_;
};

std::string Label(const char* key, const std::string& value) { return std::string(key) + "=\"" + value + "\""; }

std::string StatusHex(Status s) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%X", s);
  return buf;
}

// The families of one kind of transfer key ("transport" or "peer").
template <typename Key>
void Transfers(Writer& w, const char* prefix, const char* key_label, const std::map<Key, Stats::Transfers>& by,
               bool histograms) {
  auto key_text = [](const Key& k) {
    if constexpr (std::is_same_v<Key, std::string>) return k;
    else return std::to_string(k);
  };
  const std::string p(prefix);
  w.Family((p + "transfer_bytes_total").c_str(), "counter", "Bytes moved by successful Pull/Push calls.");
  for (const auto& [k, t] : by) {
    const std::string key = Label(key_label, key_text(k));
    w.Sample(p + "transfer_bytes_total", key + ",direction=\"pull\"", static_cast<double>(t.pull_bytes));
    w.Sample(p + "transfer_bytes_total", key + ",direction=\"push\"", static_cast<double>(t.push_bytes));
  }
  w.Family((p + "transfer_calls_total").c_str(), "counter", "Pull/Push calls, failed ones included.");
  for (const auto& [k, t] : by) {
    const std::string key = Label(key_label, key_text(k));
    w.Sample(p + "transfer_calls_total", key + ",direction=\"pull\"", static_cast<double>(t.pull_calls));
    w.Sample(p + "transfer_calls_total", key + ",direction=\"push\"", static_cast<double>(t.push_calls));
  }
  w.Family((p + "transfer_failures_total").c_str(), "counter", "Failed Pull/Push calls by status code.");
  for (const auto& [k, t] : by)
    for (const auto& [status, n] : t.failures)
      w.Sample(p + "transfer_failures_total", Label(key_label, key_text(k)) + "," + Label("status", StatusHex(status)),
               static_cast<double>(n));
  w.Family((p + "transfers_in_flight").c_str(), "gauge", "Pull/Push calls running now.");
  for (const auto& [k, t] : by)
    w.Sample(p + "transfers_in_flight", Label(key_label, key_text(k)), static_cast<double>(t.in_flight));
  if (!histograms) return;
  w.Family((p + "transfer_duration_seconds").c_str(), "histogram", "Time of Pull/Push calls.");
  for (const auto& [k, t] : by) {
    const std::string key = Label(key_label, key_text(k));
    w.Histogram((p + "transfer_duration_seconds").c_str(), key + ",direction=\"pull\"", t.pull_latency);
    w.Histogram((p + "transfer_duration_seconds").c_str(), key + ",direction=\"push\"", t.push_latency);
  }
}

}  // namespace

std::string RenderPrometheus(const Stats& s, uint64_t cluster_id) {
  Writer w(cluster_id);
  auto gauge = [&](const char* name, const char* help, double v) {
    w.Family(name, "gauge", help);
    w.Sample(name, "", v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    w.Family(name, "counter", help);
    w.Sample(name, "", v);
  };
  Transfers(w, "", "transport", s.transports, true);
  Transfers(w, "peer_", "peer", s.peers, false);
  gauge("links", "Links held now.", static_cast<double>(s.links));
  gauge("links_max", "The most links this instance may hold (llm.MaxLinks).", static_cast<double>(s.max_links));
  w.Family("links_established_total", "counter", "Links made, by which end asked.");
  w.Sample("links_established_total", "side=\"initiated\"", static_cast<double>(s.links_initiated));
  w.Sample("links_established_total", "side=\"accepted\"", static_cast<double>(s.links_accepted));
  counter("links_closed_total", "Links unlinked by either end.", static_cast<double>(s.links_closed));
  w.Family("links_refused_total", "counter", "Links this server refused, by reason.");
  for (const auto& [reason, n] : s.links_refused) w.Sample("links_refused_total", Label("reason", reason), static_cast<double>(n));
  counter("connections_accepted_total", "Connections accepted by the listener.",
          static_cast<double>(s.connections_accepted));
  counter("handshakes_completed_total", "Connections whose first frame (HELLO) arrived whole.",
          static_cast<double>(s.handshakes_completed));
  gauge("handshakes_pending", "Connections accepted and still sending their first frame.",
        static_cast<double>(s.handshakes_pending));
  w.Family("handshakes_dropped_total", "counter", "Pending connections dropped, by reason.");
  w.Sample("handshakes_dropped_total", "reason=\"timeout\"", static_cast<double>(s.handshakes_dropped_timeout));
  w.Sample("handshakes_dropped_total", "reason=\"full\"", static_cast<double>(s.handshakes_dropped_full));
  w.Sample("handshakes_dropped_total", "reason=\"source_limit\"", static_cast<double>(s.handshakes_dropped_source));
  w.Sample("handshakes_dropped_total", "reason=\"bad_frame\"", static_cast<double>(s.handshakes_dropped_bad_frame));
  gauge("requests_in_flight", "Pull/Push calls of this instance running now.", static_cast<double>(s.in_flight));
  return w.str();
}

}  // namespace lldd::metrics
