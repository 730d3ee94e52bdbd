// Byte sizes as people write them ("4K", "1MiB") and as the tools print them.
#ifndef LLM_DATADIST_TOOLS_COMMON_UNITS_H_
#define LLM_DATADIST_TOOLS_COMMON_UNITS_H_

#include <cstdint>
#include <string>

namespace lldd_tools {

// Binary multiples: 4K = 4KiB = 4096. False on anything else.
bool ParseSize(const std::string& text, uint64_t* bytes);
// "4 KiB", "1.5 GiB", "512 B".
std::string FormatBytes(uint64_t bytes);
// Decimal gigabytes per second, the unit links are sold in.
double GigabytesPerSecond(double bytes, double seconds);

}  // namespace lldd_tools

#endif  // LLM_DATADIST_TOOLS_COMMON_UNITS_H_
