#include "transport/shm/shm_messages.h"

#include <cstring>

#include "common/wire.h"

namespace lldd {

namespace {
constexpr uint32_t kShmMagic = 0x53444C4CU;  // "LLDS"
constexpr size_t kShmHeaderBytes = 18;
}  // namespace

std::vector<uint8_t> EncodeShmMessage(ShmMsg type, uint64_t request_id, uint32_t status,
                                      const std::vector<uint8_t>& meta) {
  WireWriter w;
  w.U32(kShmMagic);
  w.U16(static_cast<uint16_t>(type));
  w.U64(request_id);
  w.U32(status);
  w.Bytes(meta.data(), meta.size());
  return std::move(w.buffer());
}

Result DecodeShmMessage(const std::vector<uint8_t>& message, ShmHeader* header, std::vector<uint8_t>* meta) {
  if (message.size() < kShmHeaderBytes) return Result::Failed("short shared-memory message");
  WireReader r(message.data(), kShmHeaderBytes);
  uint32_t magic = r.U32();
  uint16_t type = r.U16();
  header->request_id = r.U64();
  header->status = r.U32();
  if (magic != kShmMagic) return Result::Failed("bad shared-memory message magic");
  if (type < static_cast<uint16_t>(ShmMsg::kHello) || type > static_cast<uint16_t>(ShmMsg::kRevokeAck))
    return Result::Failed(Msg("unknown shared-memory message type ", type));
  header->type = static_cast<ShmMsg>(type);
  meta->assign(message.begin() + kShmHeaderBytes, message.end());
  return Result::Ok();
}

std::vector<uint8_t> EncodeShmHello(const ShmHello& m) {
  WireWriter w;
  w.U64(m.link_id);
  w.U64(m.link_secret);
  return std::move(w.buffer());
}

Result DecodeShmHello(const std::vector<uint8_t>& meta, ShmHello* m) {
  WireReader r(meta);
  m->link_id = r.U64();
  m->link_secret = r.U64();
  return r.done() ? Result::Ok() : Result::Failed("malformed SHM_HELLO");
}

std::vector<uint8_t> EncodeRegionIds(const std::vector<uint64_t>& ids) {
  WireWriter w;
  w.U32(static_cast<uint32_t>(ids.size()));
  for (uint64_t id : ids) w.U64(id);
  return std::move(w.buffer());
}

Result DecodeRegionIds(const std::vector<uint8_t>& meta, std::vector<uint64_t>* ids) {
  WireReader r(meta);
  uint32_t n = r.U32();
  if (!r.ok() || n == 0 || n > kMaxRegionsPerShmMessage || r.left() != size_t{n} * 8)
    return Result::Failed("malformed region id list");
  ids->resize(n);
  for (auto& id : *ids) id = r.U64();
  return Result::Ok();
}

std::vector<uint8_t> EncodeShmMapAnswer(const ShmMapAnswer& m) {
  WireWriter w;
  w.I32(m.pid);
  w.U32(static_cast<uint32_t>(m.entries.size()));
  for (const auto& e : m.entries) {
    w.U64(e.region_id);
    w.U8(static_cast<uint8_t>(e.access));
    w.U32(e.fd_index);
    w.U64(e.memory_id);
    w.U64(e.offset_or_address);
    w.U64(e.length);
    w.U64(e.memfd_size);
  }
  return std::move(w.buffer());
}

Result DecodeShmMapAnswer(const std::vector<uint8_t>& meta, size_t fd_count, ShmMapAnswer* m) {
  constexpr size_t kEntryBytes = 8 + 1 + 4 + 8 + 8 + 8 + 8;
  WireReader r(meta);
  m->pid = r.I32();
  uint32_t n = r.U32();
  if (!r.ok() || n > kMaxRegionsPerShmMessage || r.left() != size_t{n} * kEntryBytes)
    return Result::Failed("malformed MAP answer");
  m->entries.resize(n);
  for (auto& e : m->entries) {
    e.region_id = r.U64();
    uint8_t access = r.U8();
    e.fd_index = r.U32();
    e.memory_id = r.U64();
    e.offset_or_address = r.U64();
    e.length = r.U64();
    e.memfd_size = r.U64();
    if (access == static_cast<uint8_t>(ShmAccess::kMemfd)) {
      if (e.fd_index >= fd_count || e.offset_or_address > e.memfd_size || e.length > e.memfd_size - e.offset_or_address)
        return Result::Failed("MAP answer describes a region outside its memfd");
    } else if (access != static_cast<uint8_t>(ShmAccess::kCrossMemoryAttach)) {
      return Result::Failed("MAP answer names an unknown access kind");
    }
    e.access = static_cast<ShmAccess>(access);
  }
  return r.done() ? Result::Ok() : Result::Failed("malformed MAP answer");
}

}  // namespace lldd
