// Written the way code for the vendor's adxl API is (Mooncake's Transfer
// Engine, for one): a server engine and a client engine in one process,
// the adxl.* option keys, memory from MallocMem, a read checked byte for
// byte. C++17, -Wall -Wextra -Werror -pedantic, against the installed header.
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adxl/adxl_engine.h"

int main() {
  constexpr size_t kLen = 1 << 16;
  std::map<adxl::AscendString, adxl::AscendString> options;
  options[adxl::OPTION_RDMA_TRAFFIC_CLASS] = "132";
  options["adxl.RdmaServiceLevel"] = "4";
  auto server = std::make_unique<adxl::AdxlEngine>();
  std::string name;
  adxl::Status st = adxl::FAILED;
  for (int port = 26000, tries = 0; st != adxl::SUCCESS && tries < 100; ++port, ++tries) {
    name = "127.0.0.1:" + std::to_string(port);
    st = server->Initialize(name.c_str(), options);
  }
  if (st != adxl::SUCCESS) return std::printf("server Initialize: %u\n", st), 1;
  void* src = nullptr;
  if (adxl::AdxlEngine::MallocMem(adxl::MemType::MEM_HOST, kLen, &src) != adxl::SUCCESS) return 1;
  for (size_t i = 0; i < kLen; ++i) static_cast<unsigned char*>(src)[i] = static_cast<unsigned char>(i * 7);
  adxl::MemDesc src_desc{};
  src_desc.addr = reinterpret_cast<uintptr_t>(src);
  src_desc.len = kLen;
  adxl::MemHandle src_handle = nullptr;
  if (server->RegisterMem(src_desc, adxl::MemType::MEM_HOST, src_handle) != adxl::SUCCESS) return 1;

  adxl::AdxlEngine client;
  if (client.Initialize("127.0.0.1", options) != adxl::SUCCESS) return 1;
  std::vector<unsigned char> dst(kLen);
  adxl::MemDesc dst_desc{};
  dst_desc.addr = reinterpret_cast<uintptr_t>(dst.data());
  dst_desc.len = kLen;
  adxl::MemHandle dst_handle = nullptr;
  if (client.RegisterMem(dst_desc, adxl::MemType::MEM_HOST, dst_handle) != adxl::SUCCESS) return 1;
  if (client.Connect(name.c_str(), 3000) != adxl::SUCCESS) return std::printf("Connect failed\n"), 1;
  adxl::TransferOpDesc op{dst_desc.addr, src_desc.addr, kLen};
  if (client.TransferSync(name.c_str(), adxl::TransferOp::READ, {op}, 3000) != adxl::SUCCESS) return 1;
  if (std::memcmp(dst.data(), src, kLen) != 0) return std::printf("data mismatch\n"), 1;
  client.Disconnect(name.c_str(), 3000);
  client.DeregisterMem(dst_handle);
  client.Finalize();
  server->DeregisterMem(src_handle);
  server->Finalize();
  if (adxl::AdxlEngine::FreeMem(src) != adxl::SUCCESS) return 1;
  std::printf("adxl consumer OK\n");
  return 0;
}
