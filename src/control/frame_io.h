// Sending and receiving whole frames (header + metadata) on a socket.
#ifndef LLM_DATADIST_SRC_CONTROL_FRAME_IO_H_
#define LLM_DATADIST_SRC_CONTROL_FRAME_IO_H_

#include <vector>

#include "common/deadline.h"
#include "control/protocol.h"

namespace lldd {

Result SendFrame(int fd, FrameHeader header, const std::vector<uint8_t>& meta, Deadline deadline);
// Receives a header and its metadata (not the data that may follow).
// `meta_limit` bounds what this connection accepts before reading it.
Result RecvFrame(int fd, FrameHeader* header, std::vector<uint8_t>* meta, Deadline deadline,
                 uint32_t meta_limit = kMaxMetaBytes);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_CONTROL_FRAME_IO_H_
