#include "transport/ucx/ucx_worker.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/logging.h"

namespace lldd {
namespace {

// The timer of the progress loop: the longest a completion that raised no
// event waits to be noticed while no transfer is waiting (NIXL uses a timer
// for the same reason).
constexpr int kIdleTimerMs = 5;

// The resource lines of ucp_context_print_info, e.g.
//   "#      resource 1  :  md 1  dev 1  flags -- tcp/eth0"
std::string ContextResources(ucp_context_h context) {
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  if (f == nullptr) return {};
  ucp_context_print_info(context, f);
  fclose(f);
  std::string out;
  std::istringstream lines(std::string(text, size));
  free(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("resource") == std::string::npos) continue;
    auto dashes = line.rfind("-- ");
    if (dashes == std::string::npos) continue;
    std::string res = line.substr(dashes + 3);
    while (!res.empty() && (res.back() == ' ' || res.back() == '\r')) res.pop_back();
    if (res.empty()) continue;
    if (!out.empty()) out += ' ';
    out += res;
  }
  return out;
}

// fork() while our progress thread is inside UCX would leave the child a
// copy of UCX's locks as that thread held them (the test peers and users
// fork after Initialize). Around a fork, every worker's mutex is held, so no
// thread of ours is inside UCX then. (UCX's own async thread is not
// covered: a child that uses UCX is safest started with exec.)
std::mutex g_workers_mu;
std::vector<UcxWorker*>* g_workers = new std::vector<UcxWorker*>();  // never freed: used at fork

void LockWorkersForFork() {
  g_workers_mu.lock();
  for (UcxWorker* w : *g_workers) w->mutex().lock();
}
void UnlockWorkersAfterFork() {
  for (auto it = g_workers->rbegin(); it != g_workers->rend(); ++it) (*it)->mutex().unlock();
  g_workers_mu.unlock();
}

void TrackWorker(UcxWorker* w, bool add) {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(&LockWorkersForFork, &UnlockWorkersAfterFork, &UnlockWorkersAfterFork); });
  std::lock_guard<std::mutex> lock(g_workers_mu);
  if (add) {
    g_workers->push_back(w);
  } else {
    g_workers->erase(std::remove(g_workers->begin(), g_workers->end(), w), g_workers->end());
  }
}

}  // namespace

std::string UcxStatusText(ucs_status_t status) { return Msg(ucs_status_string(status), " (", int(status), ")"); }

bool UcxWorker::ResourcesHaveRdma(const std::string& resources) {
  std::istringstream in(resources);
  std::string res;
  while (in >> res) {
    std::string tl = res.substr(0, res.find('/'));
    // Verbs transports (rc_verbs, rc_mlx5, dc_mlx5, ud_verbs, ud_mlx5, and
    // the plain aliases) and rdmacm.
    if (tl.rfind("rc", 0) == 0 || tl.rfind("dc", 0) == 0 || tl.rfind("ud", 0) == 0 || tl == "rdmacm") return true;
  }
  return false;
}

namespace {

// UCX lists the network devices at ucp_init and opens each again at
// ucp_worker_create: one that went away in between (a container's veth, or
// a test's) fails the worker with UCS_ERR_NO_DEVICE, and listing them
// again is all it takes.
constexpr int kOpenAttempts = 3;

std::function<void()>& BetweenInitAndWorker() {
  static auto* hook = new std::function<void()>();  // never freed: read until exit
  return *hook;
}

}  // namespace

void UcxWorker::SetBetweenInitAndWorkerForTest(std::function<void()> hook) { BetweenInitAndWorker() = std::move(hook); }

Result UcxWorker::OpenContextAndWorker() {
  for (int attempt = 1;; ++attempt) {
    ucp_config_t* config = nullptr;
    ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
    if (st != UCS_OK) return Result::Failed(Msg("UCX: reading its configuration failed: ", UcxStatusText(st)));
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
    params.features = UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
    params.mt_workers_shared = 0;
    st = ucp_init(&params, config, &context_);
    ucp_config_release(config);
    if (st != UCS_OK) {
      context_ = nullptr;
      return Result::Failed(Msg("UCX: ucp_init failed: ", UcxStatusText(st)));
    }
    if (BetweenInitAndWorker()) BetweenInitAndWorker()();
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    st = ucp_worker_create(context_, &wp, &worker_);
    if (st == UCS_OK) return Result::Ok();
    worker_ = nullptr;
    if (st != UCS_ERR_NO_DEVICE || attempt == kOpenAttempts)
      return Result::Failed(Msg("UCX: ucp_worker_create failed: ", UcxStatusText(st)));
    LDD_LOG(Info) << "UCX: a network device went away while the worker opened; listing them again";
    ucp_cleanup(context_);
    context_ = nullptr;
  }
}

Result UcxWorker::Create(std::shared_ptr<UcxWorker>* out) {
  std::shared_ptr<UcxWorker> w(new UcxWorker());
  LDD_RETURN_IF_ERROR(w->OpenContextAndWorker());
  w->resources_ = ContextResources(w->context_);
  w->has_rdma_ = ResourcesHaveRdma(w->resources_);
  ucs_status_t st = ucp_worker_get_efd(w->worker_, &w->event_fd_);
  if (st != UCS_OK) return Result::Failed(Msg("UCX: ucp_worker_get_efd failed: ", UcxStatusText(st)));
  ucp_address_t* address = nullptr;
  size_t address_len = 0;
  st = ucp_worker_get_address(w->worker_, &address, &address_len);
  if (st != UCS_OK) return Result::Failed(Msg("UCX: ucp_worker_get_address failed: ", UcxStatusText(st)));
  const auto* a = reinterpret_cast<const uint8_t*>(address);
  w->address_.assign(a, a + address_len);
  ucp_worker_release_address(w->worker_, address);

  w->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->wake_fd_ < 0) return Result::Failed(Msg("UCX: eventfd: ", strerror(errno)));
  TrackWorker(w.get(), true);
  w->thread_ = std::thread([raw = w.get()] { raw->Run(); });
  LDD_LOG(Info) << "UCX " << ucp_get_version_string() << " worker up; resources: " << w->resources_
                << (w->has_rdma_ ? " (RDMA)" : " (no RDMA)");
  *out = std::move(w);
  return Result::Ok();
}

UcxWorker::~UcxWorker() {
  StopProgress();
  if (wake_fd_ >= 0) TrackWorker(this, false);
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

UcxEpSlot* UcxWorker::NewEpSlot() {
  std::lock_guard<std::mutex> lock(slots_mu_);
  return &slots_.emplace_back();
}

void UcxWorker::BeginBusy() {
  busy_.fetch_add(1);
  Wake();
}

void UcxWorker::EndBusy() { busy_.fetch_sub(1); }

void UcxWorker::Wake() {
  if (wake_fd_ < 0) return;
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;  // EAGAIN: the counter is already non-zero, the thread will wake
}

void UcxWorker::StopProgress() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  Wake();
  thread_.join();
}

void UcxWorker::Run() {
  while (!stop_.load()) {
    ucs_status_t armed = UCS_ERR_BUSY;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (ucp_worker_progress(worker_) != 0) {
      }
      if (busy_.load() == 0) armed = ucp_worker_arm(worker_);
    }
    if (armed == UCS_ERR_BUSY) {
      // A transfer is waiting, or events arrived while arming: go again,
      // letting API threads take the mutex in between.
      std::this_thread::yield();
      continue;
    }
    // Armed (or arming failed: then the timer alone paces us).
    pollfd fds[2] = {{event_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int n = poll(fds, 2, kIdleTimerMs);
    if (n > 0 && (fds[1].revents & POLLIN) != 0) {
      uint64_t v;
      ssize_t r = read(wake_fd_, &v, sizeof(v));
      (void)r;
    }
  }
}

UcxRegionData::~UcxRegionData() {
  if (memh == nullptr) return;
  std::lock_guard<std::mutex> lock(worker->mutex());
  ucs_status_t st = ucp_mem_unmap(worker->context(), memh);
  if (st != UCS_OK) LDD_LOG(Warn) << "UCX: ucp_mem_unmap failed: " << UcxStatusText(st);
}

Result UcxMapRegion(const std::shared_ptr<UcxWorker>& worker, void* base, uint64_t length,
                    std::shared_ptr<UcxRegionData>* out) {
  auto data = std::make_shared<UcxRegionData>();
  data->worker = worker;
  data->base = reinterpret_cast<uint64_t>(base);
  data->length = length;
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = base;
  mp.length = length;
  std::lock_guard<std::mutex> lock(worker->mutex());
  ucs_status_t st = ucp_mem_map(worker->context(), &mp, &data->memh);
  if (st != UCS_OK) {
    data->memh = nullptr;
    return Result::Failed(Msg("UCX: ucp_mem_map of ", length, " bytes failed: ", UcxStatusText(st)));
  }
  void* packed = nullptr;
  size_t packed_size = 0;
  st = ucp_rkey_pack(worker->context(), data->memh, &packed, &packed_size);
  if (st != UCS_OK) {
    ucp_mem_unmap(worker->context(), data->memh);
    data->memh = nullptr;
    return Result::Failed(Msg("UCX: ucp_rkey_pack failed: ", UcxStatusText(st)));
  }
  const auto* p = static_cast<const uint8_t*>(packed);
  data->rkey.assign(p, p + packed_size);
  ucp_rkey_buffer_release(packed);
  *out = std::move(data);
  return Result::Ok();
}

}  // namespace lldd
