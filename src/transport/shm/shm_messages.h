// Messages of the same-host channel. Each is one SOCK_SEQPACKET message:
// a small header of its own and its metadata; a MAP answer also carries
// the memfds it describes as SCM_RIGHTS descriptors.
#ifndef LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_MESSAGES_H_
#define LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_MESSAGES_H_

#include <cstdint>
#include <vector>

#include "common/result.h"

namespace lldd {

constexpr uint32_t kMaxRegionsPerShmMessage = 1024;

enum class ShmMsg : uint16_t {
  kHello = 1,
  kHelloAck = 2,
  kMap = 3,
  kMapResp = 4,
  kRevoke = 5,
  kRevokeAck = 6,
};

struct ShmHeader {
  ShmMsg type = ShmMsg::kHello;
  uint64_t request_id = 0;
  uint32_t status = 0;  // an LLM_* code in answers
};

// How the peer may reach one of our regions directly.
enum class ShmAccess : uint8_t {
  kMemfd = 1,   // map fds[fd_index] and copy
  kCrossMemoryAttach = 2,  // process_vm_readv/writev at `address`
};

struct ShmRegionEntry {
  uint64_t region_id = 0;
  ShmAccess access = ShmAccess::kMemfd;
  uint32_t fd_index = 0;
  uint64_t memory_id = 0;
  uint64_t offset_or_address = 0;  // memfd offset, or address in the owner
  uint64_t length = 0;
  uint64_t memfd_size = 0;
};

struct ShmMapAnswer {
  int32_t pid = 0;
  std::vector<ShmRegionEntry> entries;
};

struct ShmHello {
  uint64_t link_id = 0;
  uint64_t link_secret = 0;
};

// A whole message: header plus metadata.
std::vector<uint8_t> EncodeShmMessage(ShmMsg type, uint64_t request_id, uint32_t status,
                                      const std::vector<uint8_t>& meta);
Result DecodeShmMessage(const std::vector<uint8_t>& message, ShmHeader* header, std::vector<uint8_t>* meta);

std::vector<uint8_t> EncodeShmHello(const ShmHello& m);
Result DecodeShmHello(const std::vector<uint8_t>& meta, ShmHello* m);
std::vector<uint8_t> EncodeRegionIds(const std::vector<uint64_t>& ids);
Result DecodeRegionIds(const std::vector<uint8_t>& meta, std::vector<uint64_t>* ids);
std::vector<uint8_t> EncodeShmMapAnswer(const ShmMapAnswer& m);
// `fd_count`: descriptors that came with the message; indexes must be below it.
Result DecodeShmMapAnswer(const std::vector<uint8_t>& meta, size_t fd_count, ShmMapAnswer* m);

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_SHM_SHM_MESSAGES_H_
