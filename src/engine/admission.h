// The table of connections accepted but not yet through their first frame
// (HELLO), and the rules for who gets dropped when it is full.
//
// A flood of connections that never finish their first frame (silent ones,
// or ones dripping a byte now and then) must not lock out a client that
// sends its HELLO at once. So, when the table is full, the OLDEST pending
// connection goes (it has had the longest time to say HELLO: it is the
// slowest), never the newest; and one source address may hold at most
// `per_source` entries, beyond which its own oldest goes. Every entry also
// has a deadline for its first frame. Single-threaded (the acceptor's
// event loop owns it).
#ifndef LLM_DATADIST_SRC_ENGINE_ADMISSION_H_
#define LLM_DATADIST_SRC_ENGINE_ADMISSION_H_

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "control/protocol.h"
#include "net/socket.h"

namespace lldd {

struct AdmissionLimits {
  size_t max_pending = 4096;  // connections without a complete first frame
  size_t per_source = 256;    // of them, from one source address
  int first_frame_ms = 1000;  // to send the whole first frame
};

// One accepted connection reading its first frame.
struct PendingConn {
  uint64_t id = 0;
  std::shared_ptr<Socket> socket;
  std::string peer;
  std::chrono::steady_clock::time_point deadline;
  uint8_t head[kFrameHeaderBytes] = {};
  size_t head_got = 0;
  FrameHeader header;
  std::vector<uint8_t> meta;
  size_t meta_got = 0;
};

class AdmissionTable {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Evicted { kNone, kFull, kSource };

  explicit AdmissionTable(AdmissionLimits limits) : limits_(limits) {}

  // Adds a connection (a fresh id); makes room first, handing the entry it
  // dropped (if any) to `victim` and saying why.
  PendingConn* Add(std::shared_ptr<Socket> socket, std::string peer, Clock::time_point now,
                   std::unique_ptr<PendingConn>* victim, Evicted* why);
  PendingConn* Find(uint64_t id);
  // Takes an entry out (finished, failed or dropped).
  std::unique_ptr<PendingConn> Remove(uint64_t id);
  // The oldest entry if its deadline has passed, else null.
  PendingConn* Expired(Clock::time_point now);
  // When the next deadline falls; max() if none.
  Clock::time_point NextDeadline() const;
  size_t size() const { return by_id_.size(); }
  size_t from_source(const std::string& peer) const;
  // Every entry, oldest first (for shutdown).
  std::vector<uint64_t> Ids() const;

 private:
  using Order = std::list<std::unique_ptr<PendingConn>>;
  struct Entry {
    Order::iterator order;
    std::list<uint64_t>::iterator in_source;
  };
  AdmissionLimits limits_;
  uint64_t next_id_ = 1;
  Order order_;  // oldest first: every entry has the same time to its deadline
  std::unordered_map<uint64_t, Entry> by_id_;
  std::unordered_map<std::string, std::list<uint64_t>> by_source_;  // oldest first
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_ADMISSION_H_
