// A byte range of a registered memory region, as peers name it on the wire.
#ifndef LLM_DATADIST_SRC_COMMON_SEGMENT_H_
#define LLM_DATADIST_SRC_COMMON_SEGMENT_H_

#include <cstdint>

namespace lldd {

struct Segment {
  uint64_t region_id = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_COMMON_SEGMENT_H_
