#include "engine/transport_set.h"

#include <algorithm>

#include "common/logging.h"
#include "llm_datadist/llm_types.h"
#include "transport/registry.h"

namespace lldd {

Result TransportSet::Start(const TransportConfig& config, const std::string& backend, RegionTable& regions) {
  Stop();
  regions_ = &regions;
  for (const TransportKind& kind : RegisteredTransports()) {
    const size_t slot = all_.size();
    all_.push_back(kind.make());
    Transport* t = all_.back().get();
    Result r = t->Start(config, regions, slot);
    if (r.ok()) {
      started_.push_back(t);
      continue;
    }
    if (backend == kind.name) {
      Stop();
      return Result::Failed(Msg("data path '", kind.name, "' (", llm_datadist::OPTION_TRANSFER_BACKEND,
                                ") cannot start here: ", r.message()));
    }
    LDD_LOG(Info) << "data path '" << kind.name << "' is not available here: " << r.message();
  }
  std::vector<Transport*> started = started_;
  const size_t slots = all_.size();
  regions.SetHooks(
      [started, slots](Region& region) -> Result {
        region.transport_data.resize(slots);
        for (size_t i = 0; i < started.size(); ++i) {
          Result r = started[i]->OnRegionAdded(region);
          if (!r.ok()) {
            for (size_t j = 0; j < i; ++j) started[j]->OnRegionRemoved(region);
            return r.WithContext(Msg("data path '", started[i]->name(), "'"));
          }
        }
        return Result::Ok();
      },
      [started](Region& region) {
        for (Transport* t : started) t->OnRegionRemoved(region);
      });
  return Result::Ok();
}

void TransportSet::Stop() {
  if (regions_ != nullptr) regions_->SetHooks(nullptr, nullptr);
  for (Transport* t : started_) t->Stop();
  started_.clear();
  all_.clear();
  regions_ = nullptr;
}

std::vector<TransportOffer> TransportSet::Offers() const {
  std::vector<TransportOffer> offers;
  for (Transport* t : started_) {
    TransportOffer o;
    o.name = t->name();
    if (t->LocalInfo(&o.info).ok()) offers.push_back(std::move(o));
  }
  return offers;
}

Transport* TransportSet::Find(const std::string& name) const {
  for (Transport* t : started_)
    if (name == t->name()) return t;
  return nullptr;
}

Result TransportSet::CanUse(const std::string& name, const std::vector<TransportOffer>& offers, Choice* choice) const {
  Transport* t = Find(name);
  if (t == nullptr) return Result::LinkFailed("it is not available here");
  auto it = std::find_if(offers.begin(), offers.end(), [&](const TransportOffer& o) { return o.name == name; });
  if (it == offers.end()) return Result::LinkFailed("the peer does not offer it");
  LDD_RETURN_IF_ERROR(t->CanReach(it->info));
  *choice = {t, it->info};
  return Result::Ok();
}

Result TransportSet::Choose(const std::string& mine, const std::string& theirs,
                            const std::vector<TransportOffer>& offers, std::vector<Choice>* chosen) const {
  chosen->clear();
  if (theirs != "auto" && !IsRegisteredTransport(theirs))
    return Result::LinkFailed(Msg("data path '", theirs, "' is not available here (available: auto, ",
                                  RegisteredTransportNames(), ")"));
  if (mine != "auto" && theirs != "auto" && mine != theirs)
    return Result::LinkFailed(Msg("one end forces '", std::min(mine, theirs), "', the other '", std::max(mine, theirs), "'"));
  const std::string forced = mine != "auto" ? mine : theirs;
  if (forced != "auto") {
    Choice c;
    Result r = CanUse(forced, offers, &c);
    if (!r.ok()) return Result::LinkFailed(Msg("'", forced, "' data path impossible: ", r.message()));
    chosen->push_back(c);
    if (c.transport->caps().any_host) return Result::Ok();
    // A same-host path may meet memory it cannot reach at run time (e.g.
    // cross-memory attach denied): keep the best any-host path beside it.
    for (Transport* t : started_) {
      if (!t->caps().any_host || !t->auto_eligible() || !CanUse(t->name(), offers, &c).ok()) continue;
      chosen->push_back(c);
      break;
    }
    return Result::Ok();
  }
  std::string why_not;
  for (Transport* t : started_) {
    Choice c;
    Result r = t->auto_eligible() ? CanUse(t->name(), offers, &c) : Result::LinkFailed("not chosen automatically");
    if (r.ok()) {
      chosen->push_back(c);
    } else {
      why_not += Msg(why_not.empty() ? "" : "; ", t->name(), ": ", r.message());
    }
  }
  if (chosen->empty()) return Result::LinkFailed(Msg("no data path both ends can use (", why_not, ")"));
  return Result::Ok();
}

}  // namespace lldd
