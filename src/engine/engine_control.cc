// What linked peers ask of this instance: new connections to its listener
// (a link's control connection, or a connection joining one of a link's
// data paths) and requests on a link's control channel.
#include "common/logging.h"
#include "engine/engine.h"
#include "engine/handshake.h"

namespace lldd {

using llm_datadist::LLM_SUCCESS;

void Engine::OnHello(std::shared_ptr<Socket> socket, const std::string& peer, uint64_t request_id,
                     const Hello& hello) {
  if (hello.kind == ConnKind::kControl) {
    ServeControl(socket, peer, request_id, hello);
  } else {
    ServeJoin(socket, peer, request_id, hello);
  }
}

void Engine::ServeControl(const std::shared_ptr<Socket>& socket, const std::string& peer, uint64_t request_id,
                          const Hello& hello) {
  HelloAck ack;
  ack.cluster_id = cluster_id_;
  ack.role = static_cast<int32_t>(role_.load());
  Result auth = AuthenticateClient(socket->fd(), hello, options_.link_token, request_id);
  if (!auth.ok()) {
    ack.error = auth.message();
    (void)SendHelloAck(socket->fd(), request_id, auth.code(), ack);
    metrics_.RefuseLink("token");
    LDD_LOG(Warn) << "refused link from cluster " << hello.cluster_id << " at " << peer << ": " << auth.message();
    return;
  }
  LinkPtr link;
  std::string why;
  Status status = AcceptControl(socket, hello, peer, &link, &why, &ack.transports);
  ack.error = why;
  if (link) {
    ack.link_id = link->link_id();
    ack.link_secret = link->link_secret();
  } else {
    ack.transports.clear();
  }
  Result sent = SendHelloAck(socket->fd(), request_id, status, ack);
  if (status != LLM_SUCCESS) {
    metrics_.RefuseLink(status == llm_datadist::LLM_CLUSTER_NUM_EXCEED_LIMIT ? "limit" : "other");
    LDD_LOG(Warn) << "refused link from cluster " << hello.cluster_id << " at " << peer << ": " << why;
    return;
  }
  if (!sent.ok()) {
    RemoveLink(link);
    link->Close("handshake failed");
    return;
  }
  metrics_.Peer(hello.cluster_id, true);
  metrics_.links_accepted.fetch_add(1, std::memory_order_relaxed);
  {
    // Only now may a LinkOne of ours adopt it (AdoptPeerLink): a request
    // sent before the HELLO_ACK would reach the peer inside its handshake.
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    link->set_answered();
  }
  links_cv_.notify_all();
  LDD_LOG(Info) << "cluster " << cluster_id_ << " accepted link from cluster " << hello.cluster_id << " at " << peer
                << " over " << link->primary_path();
  RunControl(link);
}

void Engine::ServeJoin(const std::shared_ptr<Socket>& socket, const std::string& peer, uint64_t request_id,
                       const Hello& hello) {
  HelloAck ack;
  ack.cluster_id = cluster_id_;
  ack.role = static_cast<int32_t>(role_.load());
  LinkPtr link;
  {
    std::lock_guard<std::shared_mutex> lock(links_mu_);
    auto it = links_.find(hello.cluster_id);
    if (it != links_.end() && it->second->link_id() == hello.link_id &&
        it->second->link_secret() == hello.link_secret && !it->second->closed())
      link = it->second;
  }
  std::shared_ptr<Endpoint> endpoint = link ? link->EndpointOf(hello.transport) : nullptr;
  Transport* transport = endpoint ? transports_.Find(hello.transport) : nullptr;
  Result admitted = Result::NotYetLink("no such link");
  if (link && !transport) admitted = Result::ParamInvalid(Msg("the link has no data path '", hello.transport, "'"));
  if (transport) admitted = transport->AdmitJoin(link, hello.join_info);
  if (!admitted.ok()) {
    ack.error = admitted.message();
    (void)SendHelloAck(socket->fd(), request_id, admitted.code(), ack);
    LDD_LOG(Warn) << "refused " << (hello.transport.empty() ? "a" : hello.transport) << " connection from " << peer
                  << " for cluster " << hello.cluster_id << ": " << admitted.message();
    return;
  }
  if (!SendHelloAck(socket->fd(), request_id, LLM_SUCCESS, ack).ok()) return;
  transport->AcceptJoin(link, endpoint, socket, hello.join_info);
}

void Engine::HandleControl(const std::weak_ptr<lldd::Link>& weak, MsgType type, std::vector<uint8_t> meta,
                           ControlChannel::Responder respond) {
  LinkPtr link = weak.lock();
  if (!link) return respond({llm_datadist::LLM_LINK_FAILED, EncodeText("link closed")});
  switch (type) {
    case MsgType::kCacheQuery: {
      int64_t id = 0;
      if (!DecodeCacheId(meta, &id).ok())
        return respond({llm_datadist::LLM_PARAM_INVALID, EncodeText("malformed cache query")});
      auto cache = caches_.Find(id);
      if (!cache)
        return respond({llm_datadist::LLM_KV_CACHE_NOT_EXIST, EncodeText(Msg("cluster ", cluster_id_, " has no cache ", id))});
      return respond({LLM_SUCCESS, EncodeCacheInfo({id, cache->ToRemoteDesc()})});
    }
    case MsgType::kUnlink: {
      // Both sides linked to each other and we still hold it: only the
      // peer's hold goes (reply 1); the link ends with the second unlink.
      if (meta.size() == 1 && meta[0] == 1 && link->held()) return respond({LLM_SUCCESS, {1}});
      LDD_LOG(Info) << "cluster " << link->remote_cluster_id() << " unlinked from cluster " << cluster_id_;
      RemoveLink(link);
      for (const auto& path : link->paths()) path.endpoint->Close();
      link->control().StopAfterReply();
      return respond({LLM_SUCCESS, {}});
    }
    case MsgType::kTransportCall: {
      TransportCall call;
      if (!DecodeTransportCall(meta, &call).ok())
        return respond({llm_datadist::LLM_PARAM_INVALID, EncodeText("malformed transport request")});
      std::shared_ptr<Endpoint> endpoint = link->EndpointOf(call.transport);
      if (!endpoint)
        return respond({llm_datadist::LLM_PARAM_INVALID, EncodeText(Msg("the link has no data path '", call.transport, "'"))});
      // A transport's request may block (it may dial, map or pin): never on
      // the control channel's reader, which every call of the link needs.
      // A thread each, but only so many per link at once.
      if (!link->TryBeginPeerCall())
        return respond({llm_datadist::LLM_LINK_BUSY,
                        EncodeText(Msg("cluster ", cluster_id_, " is serving ", Link::kMaxPeerCallsPerLink,
                                       " requests of this link already; try again"))});
      threads_.Spawn([link, endpoint, body = std::move(call.body), respond = std::move(respond)] {
        std::vector<uint8_t> reply;
        Result r = endpoint->OnPeerCall(body, &reply);
        link->EndPeerCall();
        respond(r.ok() ? Reply{LLM_SUCCESS, std::move(reply)} : Reply{r.code(), EncodeText(r.message())});
      });
      return;
    }
    case MsgType::kFrontEndCall: {
      FrontEndCall call;
      if (!DecodeTransportCall(meta, &call).ok())
        return respond({llm_datadist::LLM_PARAM_INVALID, EncodeText("malformed front-end request")});
      FrontEndHandler handler;
      {
        std::lock_guard<std::mutex> lock(front_ends_mu_);
        auto it = front_ends_.find(call.transport);
        if (it != front_ends_.end()) handler = it->second;
      }
      if (!handler)
        return respond({llm_datadist::LLM_FEATURE_NOT_ENABLED, EncodeText(Msg("no front end '", call.transport, "' here"))});
      std::vector<uint8_t> reply;
      Result r = handler(link->remote_cluster_id(), call.body, &reply);
      return respond(r.ok() ? Reply{LLM_SUCCESS, std::move(reply)} : Reply{r.code(), EncodeText(r.message())});
    }
    default:
      return respond({llm_datadist::LLM_PARAM_INVALID, EncodeText("unsupported control request")});
  }
}

void Engine::SetFrontEndHandler(const std::string& name, FrontEndHandler handler) {
  std::lock_guard<std::mutex> lock(front_ends_mu_);
  front_ends_[name] = std::move(handler);
}

Result Engine::CallFrontEnd(uint64_t remote_cluster_id, const std::string& name, const std::vector<uint8_t>& request,
                            Deadline deadline, std::vector<uint8_t>* reply) {
  std::shared_lock<std::shared_mutex> lock(lifecycle_mu_);
  LDD_RETURN_IF_ERROR(CheckInitialized());
  LinkPtr link;
  LDD_RETURN_IF_ERROR(FindLink(remote_cluster_id, &link));
  Reply answer;
  LDD_RETURN_IF_ERROR(link->control().Call(MsgType::kFrontEndCall, EncodeTransportCall({name, request}), deadline, &answer));
  if (answer.status != LLM_SUCCESS) return Result(answer.status, DecodeText(answer.meta));
  *reply = std::move(answer.meta);
  return Result::Ok();
}

}  // namespace lldd
