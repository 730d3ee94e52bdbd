// A link's control connection: small request/response messages in both
// directions, matched by request id.
//
// One reader thread (the caller of Run()) receives every frame: responses
// wake the waiting Call(), requests go to the handler, which runs on the
// reader thread and must therefore be quick: a request that may block is
// answered later, from another thread, through the Responder it is given. Closing the connection (or the
// peer dying) makes every pending Call() return LLM_LINK_FAILED at once.
#ifndef LLM_DATADIST_SRC_CONTROL_CONTROL_CHANNEL_H_
#define LLM_DATADIST_SRC_CONTROL_CONTROL_CHANNEL_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/deadline.h"
#include "control/protocol.h"
#include "net/socket.h"

namespace lldd {

struct Reply {
  Status status = llm_datadist::LLM_SUCCESS;
  std::vector<uint8_t> meta;
};

class ControlChannel : public std::enable_shared_from_this<ControlChannel> {
 public:
  // Sends the reply to one request; callable once, from any thread.
  using Responder = std::function<void(Reply)>;
  using Handler = std::function<void(MsgType type, std::vector<uint8_t> meta, Responder respond)>;

  ControlChannel(std::shared_ptr<Socket> socket, Handler handler);

  // Receives until the connection ends; returns why it ended.
  std::string Run();
  Result Call(MsgType type, const std::vector<uint8_t>& meta, Deadline deadline, Reply* reply);
  void Shutdown();
  // Ends Run() once the reply being handled has been sent (for UNLINK).
  void StopAfterReply() { stop_after_reply_ = true; }
  bool closed() const { return closed_.load(); }

 private:
  struct Pending {
    bool done = false;
    Reply reply;
  };
  Result Send(const FrameHeader& header, const std::vector<uint8_t>& meta, Deadline deadline);
  Result Respond(MsgType request, uint64_t request_id, const Reply& reply);

  std::shared_ptr<Socket> socket_;
  Handler handler_;
  // One sender at a time, each waiting at most until its own deadline (a
  // flag under a plain mutex rather than std::timed_mutex, whose clock-based
  // lock ThreadSanitizer cannot follow).
  std::mutex send_state_mu_;
  std::condition_variable send_cv_;
  bool sending_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::shared_ptr<Pending>> pending_;
  uint64_t next_id_ = 1;
  std::atomic<bool> closed_{false};
  std::atomic<bool> stop_after_reply_{false};
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_CONTROL_CONTROL_CHANNEL_H_
