#include "control/frame_io.h"

#include <algorithm>

#include "net/socket.h"

namespace lldd {

Result SendFrame(int fd, FrameHeader header, const std::vector<uint8_t>& meta, Deadline deadline) {
  header.meta_len = static_cast<uint32_t>(meta.size());
  uint8_t head[kFrameHeaderBytes];
  EncodeFrameHeader(header, head);
  IovCursor cursor;
  cursor.Append(head, sizeof(head));
  cursor.Append(const_cast<uint8_t*>(meta.data()), meta.size());
  return SendAll(fd, cursor, deadline);
}

Result RecvFrame(int fd, FrameHeader* header, std::vector<uint8_t>* meta, Deadline deadline, uint32_t meta_limit) {
  uint8_t head[kFrameHeaderBytes];
  LDD_RETURN_IF_ERROR(RecvAll(fd, head, sizeof(head), deadline));
  LDD_RETURN_IF_ERROR(DecodeFrameHeader(head, header));
  if (header->meta_len > meta_limit)
    return Result::Failed(Msg("frame metadata of ", header->meta_len, " bytes exceeds this connection's limit of ",
                              meta_limit));
  // The buffer grows with what actually arrives (at most doubling), so a
  // peer cannot make us allocate a large announced length it never sends.
  meta->clear();
  size_t got = 0;
  while (got < header->meta_len) {
    size_t chunk = std::min<size_t>(header->meta_len - got, std::max<size_t>(64U << 10, got));
    meta->resize(got + chunk);
    LDD_RETURN_IF_ERROR(RecvAll(fd, meta->data() + got, chunk, deadline));
    got += chunk;
  }
  return Result::Ok();
}

}  // namespace lldd
