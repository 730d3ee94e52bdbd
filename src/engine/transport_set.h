// The transports of one instance: every registered kind, started with the
// instance, asked about each region, and consulted when two ends agree on
// the data paths of a link. Names no transport: all it knows comes from
// the registry and the transports' capability answers.
//
// Not thread-safe for Start/Stop (the engine serializes them); the queries
// may run concurrently between them.
#ifndef LLM_DATADIST_SRC_ENGINE_TRANSPORT_SET_H_
#define LLM_DATADIST_SRC_ENGINE_TRANSPORT_SET_H_

#include <memory>
#include <string>
#include <vector>

#include "control/protocol.h"
#include "memory/region_table.h"
#include "transport/transport.h"

namespace lldd {

class TransportSet {
 public:
  ~TransportSet() { Stop(); }
  // Starts every registered transport and hooks them to the region table.
  // A transport that cannot start here is left out (with a log line),
  // unless `backend` forces it.
  Result Start(const TransportConfig& config, const std::string& backend, RegionTable& regions);
  void Stop();

  // What the connecting side offers in its HELLO.
  std::vector<TransportOffer> Offers() const;
  // The accepting side's choice for a link: the transports (best first)
  // both ends can use, given each side's requested backend ("auto" or a
  // name) and the peer's offers. Fails with the reason when there is none.
  struct Choice {
    Transport* transport = nullptr;
    std::vector<uint8_t> peer_info;
  };
  Result Choose(const std::string& mine, const std::string& theirs, const std::vector<TransportOffer>& offers,
                std::vector<Choice>* chosen) const;
  Transport* Find(const std::string& name) const;

 private:
  Result CanUse(const std::string& name, const std::vector<TransportOffer>& offers, Choice* choice) const;

  std::vector<std::unique_ptr<Transport>> all_;  // by slot
  std::vector<Transport*> started_;              // by preference
  RegionTable* regions_ = nullptr;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_TRANSPORT_SET_H_
