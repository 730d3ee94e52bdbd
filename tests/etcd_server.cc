#include "tests/etcd_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "directory/etcd_client.h"
#include "tests/peer_process.h"

namespace lldd_test {

std::string EtcdServer::FindBinary() {
  if (const char* env = std::getenv("LLDD_ETCD"); env != nullptr && *env) return access(env, X_OK) == 0 ? env : "";
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    for (size_t start = 0;;) {
      const size_t colon = p.find(':', start);
      const std::string candidate = p.substr(start, colon - start) + "/etcd";
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  return access("/usr/bin/etcd", X_OK) == 0 ? "/usr/bin/etcd" : "";
}

EtcdServer::EtcdServer() {
  client_port_ = FreeLoopbackPort();
  peer_port_ = FreeLoopbackPort();
  char tmpl[] = "/tmp/lldd-etcd-XXXXXX";
  if (mkdtemp(tmpl) != nullptr) dir_ = tmpl;
}

EtcdServer::~EtcdServer() {
  Kill();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

bool EtcdServer::Start(std::string* why) {
  const std::string bin = FindBinary();
  if (bin.empty() || dir_.empty() || client_port_ == 0 || peer_port_ == 0) {
    *why = "no etcd binary, temporary directory or free port";
    return false;
  }
  const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> args{bin,
                                "--name=lldd-test",
                                "--data-dir=" + dir_ + "/data",
                                "--listen-client-urls=" + client,
                                "--advertise-client-urls=" + client,
                                "--listen-peer-urls=" + peer,
                                "--initial-advertise-peer-urls=" + peer,
                                "--initial-cluster=lldd-test=" + peer};
  const std::string log = dir_ + "/etcd.log";
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) {
    *why = "fork failed";
    return false;
  }
  if (pid_ == 0) {
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out, 1);
    dup2(out, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  lldd::EtcdClient probe({endpoint()});
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < end) {
    bool found = false;
    lldd::EtcdKeyValue kv;
    lldd::Result r = probe.Get("/probe", lldd::Deadline::AfterMillis(500), &found, &kv);
    if (r.ok()) return true;
    *why = r.message();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      *why = "etcd exited at start (its log: " + log + ")";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void EtcdServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace lldd_test
