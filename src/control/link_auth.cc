#include "control/link_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/wire.h"

namespace lldd {

std::vector<uint8_t> MakeAuthNonce() {
  std::vector<uint8_t> nonce(kAuthNonceBytes);
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) nonce.clear();
  return nonce;
}

std::vector<uint8_t> AuthProof(const std::string& token, const char* label, const std::vector<uint8_t>& first,
                               const std::vector<uint8_t>& second) {
  std::vector<uint8_t> message(label, label + std::char_traits<char>::length(label));
  message.push_back(0);
  message.insert(message.end(), first.begin(), first.end());
  message.insert(message.end(), second.begin(), second.end());
  std::vector<uint8_t> mac(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()), message.data(), message.size(), mac.data(), &len);
  mac.resize(len);
  return mac;
}

bool AuthProofMatches(const std::vector<uint8_t>& expected, const std::vector<uint8_t>& received) {
  return !expected.empty() && expected.size() == received.size() &&
         CRYPTO_memcmp(expected.data(), received.data(), expected.size()) == 0;
}

std::vector<uint8_t> EncodeAuthChallenge(const AuthChallenge& m) {
  WireWriter w;
  w.Str(std::string(m.nonce.begin(), m.nonce.end()));
  w.Str(std::string(m.proof.begin(), m.proof.end()));
  return std::move(w.buffer());
}

Result DecodeAuthChallenge(const std::vector<uint8_t>& meta, AuthChallenge* m) {
  WireReader r(meta);
  std::string nonce = r.Str(64);
  std::string proof = r.Str(64);
  if (!r.done()) return Result::Failed("malformed AUTH_CHALLENGE");
  m->nonce.assign(nonce.begin(), nonce.end());
  m->proof.assign(proof.begin(), proof.end());
  return Result::Ok();
}

}  // namespace lldd
