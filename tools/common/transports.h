// The data paths the library knows by name (OPTION_TRANSFER_BACKEND).
//
// The tools never interpret a transport: they pass the string to the
// library on both sides and report what the link actually uses. This list
// exists for help texts and for the benchmark's default sweep; a data path
// added to the library is added here and nowhere else.
#ifndef LLM_DATADIST_TOOLS_COMMON_TRANSPORTS_H_
#define LLM_DATADIST_TOOLS_COMMON_TRANSPORTS_H_

#include <string>
#include <vector>

namespace lldd_tools {

struct TransportInfo {
  const char* name;
  const char* description;
};

const std::vector<TransportInfo>& KnownTransports();
std::vector<std::string> KnownTransportNames();
std::string KnownTransportsHelp();  // "auto (best available), tcp (...), ..."

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_TRANSPORTS_H_
