// Link authentication by a shared token (option llm.LinkToken).
//
// Challenge-response with HMAC-SHA256, both ways: each side proves it knows
// the token by answering the other's fresh nonce, so the token itself
// never crosses the network and a recorded handshake cannot be replayed.
//
//   client -> HELLO          {nonce_c}
//   server -> AUTH_CHALLENGE {nonce_s, HMAC(token, "server" | nonce_c | nonce_s)}
//   client -> AUTH_PROOF     {HMAC(token, "client" | nonce_s | nonce_c)}
//   server -> HELLO_ACK
#ifndef LLM_DATADIST_SRC_CONTROL_LINK_AUTH_H_
#define LLM_DATADIST_SRC_CONTROL_LINK_AUTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace lldd {

constexpr size_t kAuthNonceBytes = 32;

std::vector<uint8_t> MakeAuthNonce();
// HMAC-SHA256(token, label | first | second).
std::vector<uint8_t> AuthProof(const std::string& token, const char* label, const std::vector<uint8_t>& first,
                               const std::vector<uint8_t>& second);
// Constant-time comparison of a received proof with the expected one.
bool AuthProofMatches(const std::vector<uint8_t>& expected, const std::vector<uint8_t>& received);

struct AuthChallenge {
  std::vector<uint8_t> nonce;
  std::vector<uint8_t> proof;
};
std::vector<uint8_t> EncodeAuthChallenge(const AuthChallenge& m);
Result DecodeAuthChallenge(const std::vector<uint8_t>& meta, AuthChallenge* m);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_CONTROL_LINK_AUTH_H_
