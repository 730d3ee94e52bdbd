#include "engine/admission.h"

namespace lldd {

PendingConn* AdmissionTable::Add(std::shared_ptr<Socket> socket, std::string peer, Clock::time_point now,
                                 std::unique_ptr<PendingConn>* victim, Evicted* why) {
  *why = Evicted::kNone;
  auto source = by_source_.find(peer);
  if (source != by_source_.end() && source->second.size() >= limits_.per_source) {
    *victim = Remove(source->second.front());
    *why = Evicted::kSource;
  } else if (by_id_.size() >= limits_.max_pending && !order_.empty()) {
    *victim = Remove(order_.front()->id);
    *why = Evicted::kFull;
  }
  auto conn = std::make_unique<PendingConn>();
  conn->id = next_id_++;
  conn->socket = std::move(socket);
  conn->peer = std::move(peer);
  conn->deadline = now + std::chrono::milliseconds(limits_.first_frame_ms);
  PendingConn* raw = conn.get();
  order_.push_back(std::move(conn));
  auto& list = by_source_[raw->peer];
  list.push_back(raw->id);
  by_id_[raw->id] = Entry{std::prev(order_.end()), std::prev(list.end())};
  return raw;
}

PendingConn* AdmissionTable::Find(uint64_t id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.order->get();
}

std::unique_ptr<PendingConn> AdmissionTable::Remove(uint64_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  std::unique_ptr<PendingConn> conn = std::move(*it->second.order);
  order_.erase(it->second.order);
  auto source = by_source_.find(conn->peer);
  source->second.erase(it->second.in_source);
  if (source->second.empty()) by_source_.erase(source);
  by_id_.erase(it);
  return conn;
}

PendingConn* AdmissionTable::Expired(Clock::time_point now) {
  if (order_.empty() || order_.front()->deadline > now) return nullptr;
  return order_.front().get();
}

AdmissionTable::Clock::time_point AdmissionTable::NextDeadline() const {
  return order_.empty() ? Clock::time_point::max() : order_.front()->deadline;
}

size_t AdmissionTable::from_source(const std::string& peer) const {
  auto it = by_source_.find(peer);
  return it == by_source_.end() ? 0 : it->second.size();
}

std::vector<uint64_t> AdmissionTable::Ids() const {
  std::vector<uint64_t> ids;
  ids.reserve(order_.size());
  for (const auto& c : order_) ids.push_back(c->id);
  return ids;
}

}  // namespace lldd
