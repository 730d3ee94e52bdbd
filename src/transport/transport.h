// The contract between the engine and a data path ("transport").
//
// A transport is one folder under src/transport/<name>/ with its own
// CMakeLists.txt, which declares it with one line:
//
//   lldd_add_transport(NAME tcp FACTORY MakeTcpTransport PREFERENCE 100 SOURCES ...)
//
// and a factory `std::unique_ptr<Transport> MakeTcpTransport()`. The engine,
// the control protocol and the region table never name a transport: they
// see this interface, the registry (transport/registry.h), and opaque bytes.
//
// Life of a transport inside one LlmDataDist instance:
//   1. Initialize creates one instance of every registered kind and calls
//      Start() (where a transport listens on something of its own, e.g. the
//      shm Unix socket). Finalize calls Stop().
//   2. Every region the instance registers or allocates passes through
//      OnRegionAdded() (where a transport may pin or map it and keep an
//      opaque descriptor in Region::transport_data[slot]) and, when it goes
//      away, OnRegionRemoved().
//   3. Linking: the connecting side offers LocalInfo() of each usable kind
//      in its HELLO; the accepting side keeps the kinds whose CanReach()
//      accepts the peer's info, in preference order (or the one kind the
//      options force), makes an Endpoint for each with Connect(), and
//      answers with its own LocalInfo(); the connecting side then calls
//      Connect() for the same kinds, in the same order. A link thus holds
//      one endpoint per agreed kind; each transfer uses the first endpoint
//      whose capabilities cover both sides' memory kinds.
//   4. A transport may open connections of its own to the peer's listener
//      (LinkHandle::DialJoin); they reach the peer's AcceptJoin(). It may
//      also exchange small messages with its peer endpoint over the link's
//      control channel (LinkHandle::CallPeer -> Endpoint::OnPeerCall), which
//      the engine runs off the control reader thread, so they may block.
//
// Thread safety: every method may be called from several threads at once,
// except Start/Stop, which the engine serializes against everything else.
#ifndef LLM_DATADIST_SRC_TRANSPORT_TRANSPORT_H_
#define LLM_DATADIST_SRC_TRANSPORT_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/deadline.h"
#include "common/result.h"
#include "memory/memory_kind.h"
#include "memory/region_table.h"
#include "net/socket.h"
#include "transport/endpoint.h"

namespace lldd {

struct TransportCaps {
  // False: both ends must share a host (and its namespaces).
  bool any_host = true;
  // Memory kinds (MemoryKind bits) it moves bytes from or into, on this
  // side and on the peer's side.
  uint32_t local_memory = kAnyHostMemory;
  uint32_t remote_memory = kAnyHostMemory;
  // True when a thread of the peer process serves each request (TCP's data
  // server); false for one-sided paths (mapped memory, RDMA).
  bool needs_peer_thread = true;
};

// What the engine tells every transport at Start().
struct TransportConfig {
  uint64_t cluster_id = 0;
  uint32_t connections = 0;        // llm.TcpConnectionsPerLink (0: choose)
  uint32_t copy_threads = 0;       // llm.CopyThreads (0: choose)
  int32_t device_id = -1;          // OPTION_DEVICE_ID
  int64_t sync_wait_ms = 1000;     // default deadline of a transfer
  std::string backend = "auto";    // llm.TransferBackend: "auto" or a transport's name
};

// A link as a transport sees it. Implemented by the engine.
class LinkHandle {
 public:
  virtual ~LinkHandle() = default;
  virtual uint64_t remote_cluster_id() const = 0;
  // True on the side that called LinkLlmClusters (it can dial the peer).
  virtual bool initiator() const = 0;
  // A random id and secret both ends of the link know (the acceptor chose
  // them): a transport may use them to match and authenticate connections
  // of its own.
  virtual uint64_t link_id() const = 0;
  virtual uint64_t link_secret() const = 0;
  // Sends `request` to the peer's endpoint of the same transport
  // (Endpoint::OnPeerCall there) and waits for its reply.
  virtual Result CallPeer(const std::string& transport, const std::vector<uint8_t>& request, Deadline deadline,
                          std::vector<uint8_t>* reply) = 0;
  // Opens a connection to the peer's listener that joins this link: the
  // peer hands it to its transport's AcceptJoin() with `join_info`. Only
  // the initiator can dial (the other side may not listen).
  virtual Result DialJoin(const std::string& transport, const std::vector<uint8_t>& join_info, Deadline deadline,
                          std::shared_ptr<Socket>* out) = 0;
  // Connections of this link that the transport serves; the engine shuts
  // them down when the link ends.
  virtual void TrackSocket(const std::shared_ptr<Socket>& socket) = 0;
  virtual size_t TrackedSockets() const = 0;
  // Runs `fn` on a thread the instance joins at Finalize.
  virtual void Spawn(std::function<void()> fn) = 0;
  virtual bool closed() const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual TransportCaps caps() const = 0;

  // Whether llm.TransferBackend=auto may pick it (forcing it by name works
  // regardless). UCX, for instance, is worth it only with an RDMA device.
  virtual bool auto_eligible() const { return true; }

  // `slot` indexes Region::transport_data for this transport.
  virtual Result Start(const TransportConfig& config, RegionTable& regions, size_t slot) = 0;
  virtual void Stop() = 0;

  // How a peer reaches us, as bytes only this transport reads. Fails (with
  // the reason) when the transport cannot serve links at all here.
  virtual Result LocalInfo(std::vector<uint8_t>* info) const = 0;
  // Whether a link to the peer that sent `peer_info` can use this transport.
  virtual Result CanReach(const std::vector<uint8_t>& peer_info) const = 0;

  // Region hooks. OnRegionAdded may store an opaque descriptor in
  // region.transport_data[slot]; a failure refuses the registration.
  virtual Result OnRegionAdded(Region& region) {
    (void)region;
    return Result::Ok();
  }
  virtual void OnRegionRemoved(Region& region) { (void)region; }
  // Whether a peer could still write memory of `kind` (allocated by the
  // library or not) through this transport after it stops answering us,
  // so that the memory must not be freed before the peer confirmed its
  // revocation (Endpoint::Revoke). False where every access goes through
  // a thread of ours that removal stops (TCP), or where the peer's own
  // mapping keeps the memory alive (memfds, VMM handles).
  virtual bool RevokeNeedsPeer(uint32_t kind, bool allocated) const {
    (void)kind;
    (void)allocated;
    return false;
  }

  // This link's endpoint. The accepting side calls it before answering the
  // HELLO, the initiator after the answer (it may then join the peer).
  // `fallback` is the endpoint of an any-host transport on the same link
  // (null if none), for ranges this one cannot move at run time.
  virtual Result Connect(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& peer_info,
                         std::shared_ptr<Endpoint> fallback, Deadline deadline, std::shared_ptr<Endpoint>* out) = 0;
  // Whether to admit a connection that wants to join `link` (asked before
  // the engine answers its HELLO); a failure refuses it with its code.
  virtual Result AdmitJoin(const std::shared_ptr<LinkHandle>& link, const std::vector<uint8_t>& join_info) {
    (void)link;
    (void)join_info;
    return Result::Ok();
  }
  // A connection that joined `endpoint` (one this transport made) through
  // the engine's listener. Called on a thread of its own, which it may keep
  // to serve the connection.
  virtual void AcceptJoin(const std::shared_ptr<LinkHandle>& link, const std::shared_ptr<Endpoint>& endpoint,
                          std::shared_ptr<Socket> socket, const std::vector<uint8_t>& join_info) {
    (void)link;
    (void)endpoint;
    (void)join_info;
    socket->Shutdown();
  }
};

}  // namespace lldd

#endif  // LLM_DATADIST_SRC_TRANSPORT_TRANSPORT_H_
