#include "engine/handshake.h"

#include "control/frame_io.h"
#include "control/link_auth.h"
#include "engine/options.h"

namespace lldd {

using llm_datadist::LLM_SUCCESS;

Result SendHelloAck(int fd, uint64_t request_id, Status status, const HelloAck& ack) {
  FrameHeader h;
  h.type = MsgType::kHelloAck;
  h.request_id = request_id;
  h.status = status;
  return SendFrame(fd, h, EncodeHelloAck(ack), Deadline::AfterMillis(kHandshakeTimeoutMs));
}

Result ClientHandshake(int fd, const Hello& hello, const std::string& token, Deadline deadline, HelloAck* ack) {
  FrameHeader h;
  h.type = MsgType::kHello;
  h.request_id = 1;
  LDD_RETURN_IF_ERROR(SendFrame(fd, h, EncodeHello(hello), deadline));
  std::vector<uint8_t> meta;
  FrameHeader rh;
  Result r = RecvFrame(fd, &rh, &meta, deadline, 64 << 10);
  bool challenged = false;
  if (r.ok() && rh.type == MsgType::kAuthChallenge) {
    if (token.empty())
      return Result::LinkFailed(Msg("the peer requires a link token (option ", kOptionLinkToken, "); none is set here"));
    AuthChallenge challenge;
    if (!DecodeAuthChallenge(meta, &challenge).ok()) return Result::LinkFailed("handshake failed: malformed challenge");
    if (!AuthProofMatches(AuthProof(token, "server", hello.auth_nonce, challenge.nonce), challenge.proof))
      return Result::LinkFailed("the peer does not know our link token: the tokens differ");
    FrameHeader proof;
    proof.type = MsgType::kAuthProof;
    proof.request_id = rh.request_id;
    LDD_RETURN_IF_ERROR(SendFrame(fd, proof, AuthProof(token, "client", challenge.nonce, hello.auth_nonce), deadline));
    challenged = true;
    r = RecvFrame(fd, &rh, &meta, deadline, 64 << 10);
  }
  if (r.code() == llm_datadist::LLM_TIMEOUT) return Result::Timeout("the peer did not answer the handshake in time");
  if (!r.ok()) return Result::LinkFailed(Msg("handshake failed: ", r.message()));
  if (rh.type != MsgType::kHelloAck) return Result::LinkFailed("handshake failed: unexpected answer");
  if (!DecodeHelloAck(meta, ack).ok()) return Result::LinkFailed("handshake failed: malformed answer");
  if (rh.status != LLM_SUCCESS) return Result(rh.status, Msg("the peer refused the link: ", ack->error));
  if (!token.empty() && !challenged && hello.kind == ConnKind::kControl)
    return Result::LinkFailed(Msg("the peer does not use a link token, but ", kOptionLinkToken, " is set here"));
  return Result::Ok();
}

Result AuthenticateClient(int fd, const Hello& hello, const std::string& token, uint64_t request_id) {
  if (token.empty() && hello.auth_nonce.empty()) return Result::Ok();
  if (token.empty())
    return Result::LinkFailed(Msg("the client offers a link token but this server has none (", kOptionLinkToken, ")"));
  if (hello.auth_nonce.size() != kAuthNonceBytes)
    return Result::LinkFailed(Msg("this server requires a link token (option ", kOptionLinkToken, ")"));
  const Deadline deadline = Deadline::AfterMillis(kHandshakeTimeoutMs);
  AuthChallenge challenge;
  challenge.nonce = MakeAuthNonce();
  challenge.proof = AuthProof(token, "server", hello.auth_nonce, challenge.nonce);
  FrameHeader h;
  h.type = MsgType::kAuthChallenge;
  h.request_id = request_id;
  LDD_RETURN_IF_ERROR(SendFrame(fd, h, EncodeAuthChallenge(challenge), deadline));
  FrameHeader rh;
  std::vector<uint8_t> proof;
  LDD_RETURN_IF_ERROR(RecvFrame(fd, &rh, &proof, deadline, 256));
  if (rh.type != MsgType::kAuthProof) return Result::LinkFailed("expected AUTH_PROOF");
  if (!AuthProofMatches(AuthProof(token, "client", challenge.nonce, hello.auth_nonce), proof))
    return Result::LinkFailed("link token mismatch: the client does not know this server's token");
  return Result::Ok();
}

}  // namespace lldd
