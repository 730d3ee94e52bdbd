// Base64 (RFC 4648, with padding): etcd's JSON gateway carries keys and
// values as base64 strings.
#ifndef LLM_DATADIST_SRC_DIRECTORY_BASE64_H_
#define LLM_DATADIST_SRC_DIRECTORY_BASE64_H_

#include <string>

namespace lldd {

std::string Base64Encode(const std::string& bytes);
// False for anything that is not canonical padded base64.
bool Base64Decode(const std::string& text, std::string* bytes);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_DIRECTORY_BASE64_H_
