// The contract between the engine and a data path ("transport").
//
// The engine plans a transfer as a list of IoOps: a local address, and a
// range of a region the peer registered (named by region id, the key every
// transport understands). An Endpoint is one linked peer as seen through
// one transport; it moves the bytes one-sidedly: the peer's application
// calls nothing. Read pulls remote ranges into local memory; Write pushes
// local memory into remote ranges.
//
// Contract for implementations:
//   - Return within `deadline` (LLM_TIMEOUT), whatever the peer does.
//   - After a call returns, no byte of it lands in local memory any more.
//   - The peer validates every range against its own region table; refusal
//     comes back as LLM_KV_CACHE_NOT_EXIST (unknown region) or
//     LLM_PARAM_INVALID (out of bounds), with the peer's reason.
//   - Safe to call from several threads at once.
#ifndef LLM_DATADIST_SRC_TRANSPORT_ENDPOINT_H_
#define LLM_DATADIST_SRC_TRANSPORT_ENDPOINT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"

namespace lldd {

struct IoOp {
  uint8_t* local = nullptr;
  uint64_t region_id = 0;
  uint64_t remote_offset = 0;
  uint64_t length = 0;
};

// How long a peer may take to confirm a revocation (Endpoint::Revoke): it
// waits at most kPeerRevokeWaitMs for its own transfers that use the
// regions, and the owner waits kRevokeConfirmMs for the answer (the peer's
// wait plus the round trip), so the two always agree.
constexpr int kPeerRevokeWaitMs = 5000;
constexpr int kRevokeConfirmMs = kPeerRevokeWaitMs + 2000;

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual const char* name() const = 0;
  // Learns how to reach these remote regions before a transfer names them
  // (the shm path maps them here); a no-op where nothing is needed.
  virtual Result Prepare(const std::vector<uint64_t>& region_ids, Deadline deadline) {
    (void)region_ids;
    (void)deadline;
    return Result::Ok();
  }
  // Our regions are going away: the peer must stop reaching them directly
  // before this returns (the shm path); a no-op where every access goes
  // through us anyway.
  virtual Result Revoke(const std::vector<uint64_t>& region_ids, Deadline deadline) {
    (void)region_ids;
    (void)deadline;
    return Result::Ok();
  }
  // A request from the peer's endpoint of the same transport (its
  // LinkHandle::CallPeer). Runs off the control reader thread, so it may
  // block briefly; its Result's code and message reach the caller.
  virtual Result OnPeerCall(const std::vector<uint8_t>& request, std::vector<uint8_t>* reply) {
    (void)request;
    (void)reply;
    return Result::ParamInvalid(Msg("the ", name(), " data path takes no requests from its peer"));
  }
  virtual Result Read(const std::vector<IoOp>& ops, Deadline deadline) = 0;
  virtual Result Write(const std::vector<IoOp>& ops, Deadline deadline) = 0;
  // As Read and Write; `hold` keeps the caller's local memory valid (its
  // region lease). A path whose access to local memory can outlive a
  // timed-out call (a GPU copy that did not stop within its drain) keeps
  // `hold` until that access has ended, so the memory cannot be freed
  // under it; the other paths need not look at it.
  virtual Result ReadHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) {
    (void)hold;
    return Read(ops, deadline);
  }
  virtual Result WriteHolding(const std::vector<IoOp>& ops, Deadline deadline, std::shared_ptr<const void> hold) {
    (void)hold;
    return Write(ops, deadline);
  }
  // Makes in-flight and later calls fail promptly.
  virtual void Close() = 0;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_ENDPOINT_H_
