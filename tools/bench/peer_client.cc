#include "bench/peer_client.h"

namespace lldd_bench {
namespace {

// Generous: creating a cache fills it, which takes a while for big ones.
constexpr int kAnswerTimeoutMs = 120000;

std::string Rest(const std::string& line) {
  size_t sp = line.find(' ');
  return sp == std::string::npos ? "" : line.substr(sp + 1);
}

}  // namespace

bool PeerClient::Ask(const std::string& command, std::string* value, std::string* error) {
  std::string answer = channel_.Ask(command, kAnswerTimeoutMs);
  if (answer == "ok" || answer.rfind("ok ", 0) == 0) {
    *value = Rest(answer);
    return true;
  }
  *error = "peer: " + (answer.rfind("error ", 0) == 0 ? Rest(answer) : answer);
  return false;
}

bool PeerClient::Hello(uint16_t* socket_port, std::string* error) {
  std::string line;
  if (!channel_.ReadLine(&line, kAnswerTimeoutMs) || line.rfind("hello ", 0) != 0) {
    *error = "the peer process did not start" + (line.empty() ? "" : ": " + line);
    return false;
  }
  *socket_port = static_cast<uint16_t>(std::stoul(Rest(line)));
  return true;
}

PeerClient::InitResult PeerClient::Init(const std::string& transport, int64_t wait_ms, uint32_t tcp_connections,
                                        uint16_t* port, std::string* error) {
  std::string answer = channel_.Ask("init " + (transport.empty() ? std::string("-") : transport) + " " +
                                        std::to_string(wait_ms) + " " + std::to_string(tcp_connections),
                                    kAnswerTimeoutMs);
  if (answer.rfind("ok ", 0) == 0) {
    *port = static_cast<uint16_t>(std::stoul(Rest(answer)));
    return InitResult::kOk;
  }
  *error = "peer: " + Rest(answer);
  return answer.rfind("unavailable ", 0) == 0 ? InitResult::kUnavailable : InitResult::kError;
}

bool PeerClient::CreateCache(const std::string& memory, uint32_t tensors, uint64_t rows, uint64_t row_bytes,
                             uint64_t seed, int64_t* cache_id, std::string* error) {
  std::string value;
  if (!Ask("cache " + memory + " " + std::to_string(tensors) + " " + std::to_string(rows) + " " +
               std::to_string(row_bytes) + " " + std::to_string(seed),
           &value, error))
    return false;
  *cache_id = std::stoll(value);
  return true;
}

bool PeerClient::Fill(int64_t cache_id, uint64_t seed, const std::vector<uint64_t>& rows, std::string* error) {
  std::string cmd = "fill " + std::to_string(cache_id) + " " + std::to_string(seed);
  // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict
  // inside `" " + std::to_string(r)` (operator+ of a literal and a temporary).
  for (uint64_t r : rows) cmd.append(" ").append(std::to_string(r));
  std::string value;
  return Ask(cmd, &value, error);
}

bool PeerClient::Check(int64_t cache_id, uint64_t seed, const std::vector<std::pair<uint64_t, uint64_t>>& pairs,
                       std::string* error) {
  std::string cmd = "check " + std::to_string(cache_id) + " " + std::to_string(seed);
  for (const auto& [dst, src] : pairs)
    cmd.append(" ").append(std::to_string(dst)).append(":").append(std::to_string(src));
  std::string value;
  return Ask(cmd, &value, error);
}

bool PeerClient::Free(int64_t cache_id, std::string* error) {
  std::string value;
  return Ask("free " + std::to_string(cache_id), &value, error);
}

bool PeerClient::StartHixl(const std::string& transport, uint64_t slots, uint64_t slot_bytes, uint64_t seed,
                           bool mallocmem, std::string* engine, uintptr_t* region, std::string* error) {
  std::string value;
  if (!Ask("hixl " + (transport.empty() ? std::string("-") : transport) + " " + std::to_string(slots) + " " +
               std::to_string(slot_bytes) + " " + std::to_string(seed) + (mallocmem ? " mallocmem" : ""),
           &value, error))
    return false;
  const size_t sp = value.find(' ');
  if (sp == std::string::npos) return *error = "peer: bad hixl answer '" + value + "'", false;
  *engine = value.substr(0, sp);
  *region = static_cast<uintptr_t>(std::stoull(value.substr(sp + 1)));
  return true;
}

void PeerClient::Quit() { channel_.Ask("quit", 10000); }

}  // namespace lldd_bench
