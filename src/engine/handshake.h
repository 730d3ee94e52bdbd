// The first frames of a connection to an instance's listener: HELLO, an
// optional link-token challenge (control/link_auth.h), HELLO_ACK.
#ifndef LLM_DATADIST_SRC_ENGINE_HANDSHAKE_H_
#define LLM_DATADIST_SRC_ENGINE_HANDSHAKE_H_

#include <string>

#include "common/deadline.h"
#include "common/result.h"
#include "control/protocol.h"

namespace lldd {

constexpr int kHandshakeTimeoutMs = 5000;
// A HELLO carries transport offers (each up to kMaxTransportInfo bytes).
constexpr uint32_t kHelloMetaLimit = 64U << 10;

// Connecting side: sends HELLO, answers a token challenge if one comes,
// waits for HELLO_ACK. `token` empty: this side has none.
Result ClientHandshake(int fd, const Hello& hello, const std::string& token, Deadline deadline, HelloAck* ack);
// Accepting side: runs the token challenge of a control connection when
// either end uses a token; fails when they disagree.
Result AuthenticateClient(int fd, const Hello& hello, const std::string& token, uint64_t request_id);
Result SendHelloAck(int fd, uint64_t request_id, Status status, const HelloAck& ack);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_ENGINE_HANDSHAKE_H_
