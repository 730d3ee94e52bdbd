#include "engine/options.h"

#include <gtest/gtest.h>

namespace lldd {
namespace {

using llm_datadist::LLM_PARAM_INVALID;

constexpr const char kDeviceId[] = "llm.DeviceId";
constexpr const char kListen[] = "llm.ListenIpInfo";
constexpr const char kWait[] = "llm.SyncKvCacheWaitTime";
constexpr const char kSwitchRole[] = "llm.EnableSwitchRole";
constexpr const char kBufPool[] = "llm.BufPoolCfg";
constexpr const char kCommRes[] = "llm.LocalCommRes";
constexpr const char kBackend[] = "llm.TransferBackend";
constexpr const char kConns[] = "llm.TcpConnectionsPerLink";

OptionMap Base() { return {{"llm.DeviceId", "0"}}; }

OptionMap With(const char* key, const std::string& value) {
  OptionMap m = Base();
  m[key] = value.c_str();
  return m;
}

// Expects ParseOptions to refuse `options` with LLM_PARAM_INVALID and a
// message naming `key`.
void ExpectInvalid(const OptionMap& options, const char* key) {
  EngineOptions o;
  Result r = ParseOptions(options, &o);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID) << r.message();
  EXPECT_NE(r.message().find(key), std::string::npos) << "message does not name " << key << ": " << r.message();
}

EngineOptions ExpectOk(const OptionMap& options) {
  EngineOptions o;
  Result r = ParseOptions(options, &o);
  EXPECT_TRUE(r.ok()) << r.message();
  return o;
}

TEST(OptionsTest, Defaults) {
  EngineOptions o = ExpectOk(Base());
  EXPECT_EQ(o.device_id, 0);
  EXPECT_FALSE(o.listen);
  EXPECT_EQ(o.sync_wait_ms, 1000);
  EXPECT_FALSE(o.enable_set_role);
  EXPECT_EQ(o.backend, "auto");
  EXPECT_EQ(o.tcp_connections, 0u);  // the TCP transport picks from the cores
  EXPECT_TRUE(o.link_token.empty());
  EXPECT_TRUE(o.local_device_ip.empty());
}

TEST(OptionsTest, DeviceIdRequired) {
  ExpectInvalid({}, kDeviceId);
  ExpectInvalid({{"llm.ListenIpInfo", "127.0.0.1:26000"}}, kDeviceId);
}

TEST(OptionsTest, DeviceIdValues) {
  EXPECT_EQ(ExpectOk(With(kDeviceId, "7")).device_id, 7);
  EXPECT_EQ(ExpectOk(With(kDeviceId, "2147483647")).device_id, INT32_MAX);
  for (const char* bad : {"abc", "-1", "", " 1", "1 ", "1.5", "0x1", "+1", "2147483648", "99999999999999999999"}) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kDeviceId, bad), kDeviceId);
  }
}

TEST(OptionsTest, FailureLeavesOutputUntouched) {
  EngineOptions o;
  o.device_id = 42;
  o.backend = "tcp";
  Result r = ParseOptions(With(kDeviceId, "abc"), &o);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(o.device_id, 42);
  EXPECT_EQ(o.backend, "tcp");
}

TEST(OptionsTest, ListenIpv4) {
  EngineOptions o = ExpectOk(With(kListen, "127.0.0.1:26000"));
  EXPECT_TRUE(o.listen);
  EXPECT_EQ(o.listen_host, "127.0.0.1");
  EXPECT_EQ(o.listen_port, 26000);
}

TEST(OptionsTest, ListenIpv6) {
  EngineOptions o = ExpectOk(With(kListen, "[::1]:5"));
  EXPECT_TRUE(o.listen);
  EXPECT_EQ(o.listen_host, "::1");
  EXPECT_EQ(o.listen_port, 5);
}

TEST(OptionsTest, ListenRejected) {
  for (const char* bad : {"1.2.3.4", "host:1", "1.2.3.4:70000", "1.1.1.1:1,2.2.2.2:2", "", ":80", "1.2.3.4:",
                          "1.2.3.4:-1", "1.2.3.4:8a", "::1:5", "[::1]", "[::1]5", "[::1:5", "[1.2.3.4]:5x",
                          "1.2.3.4:65536", "1.2.3.4:123456"}) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kListen, bad), kListen);
  }
}

TEST(OptionsTest, ParseListenOptionAlone) {
  EngineOptions o;
  o.listen = true;
  ASSERT_TRUE(ParseListenOption({}, &o).ok());
  EXPECT_FALSE(o.listen);  // absent option: not listening

  ASSERT_TRUE(ParseListenOption({{"llm.ListenIpInfo", "10.1.2.3:65535"}}, &o).ok());
  EXPECT_TRUE(o.listen);
  EXPECT_EQ(o.listen_host, "10.1.2.3");
  EXPECT_EQ(o.listen_port, 65535);

  Result r = ParseListenOption({{"llm.ListenIpInfo", "nope"}}, &o);
  EXPECT_EQ(r.code(), LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find(kListen), std::string::npos) << r.message();
}

TEST(OptionsTest, SyncWaitTime) {
  EXPECT_EQ(ExpectOk(With(kWait, "1")).sync_wait_ms, 1);
  EXPECT_EQ(ExpectOk(With(kWait, "30000")).sync_wait_ms, 30000);
  for (const char* bad : {"0", "x", "", "-5", "2147483648", "1e3"}) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kWait, bad), kWait);
  }
}

TEST(OptionsTest, EnableSwitchRole) {
  EXPECT_TRUE(ExpectOk(With(kSwitchRole, "1")).enable_set_role);
  EXPECT_FALSE(ExpectOk(With(kSwitchRole, "0")).enable_set_role);
  for (const char* bad : {"true", "false", "2", "", "01", " 1"}) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kSwitchRole, bad), kSwitchRole);
  }
}

TEST(OptionsTest, BufPoolCfg) {
  ExpectOk(With(kBufPool, ""));
  ExpectOk(With(kBufPool, "{}"));
  ExpectOk(With(kBufPool, R"({"buf_pool_size": 2147483648})"));
  ExpectOk(With(kBufPool, R"({"buf_cfg":[{"total_size":2097152,"blk_size":256,"max_buf_size":8192},
                                         {"total_size":4194304,"blk_size":512,"max_buf_size":65536}],
                              "buf_pool_size":2147483648})"));
  for (const char* bad : {
           "{",                                                     // malformed
           "not json",                                              // malformed
           "[1, 2]",                                                // not an object
           "42",                                                    // not an object
           R"({"buf_pool_size": "big"})",                           // wrong type
           R"({"buf_pool_size": -1})",                              // negative
           R"({"buf_pool_size": 1.5})",                             // not an integer
           R"({"buf_cfg": {}})",                                    // not an array
           R"({"buf_cfg": [1]})",                                   // entry not an object
           R"({"buf_cfg": [{"total_size":1,"blk_size":1}]})",       // missing field
           R"({"buf_cfg": [{"total_size":1,"blk_size":"1","max_buf_size":1}]})",  // wrong type
           R"({"buf_cfg": [{"total_size":-1,"blk_size":1,"max_buf_size":1}]})",   // negative
       }) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kBufPool, bad), kBufPool);
  }
}

TEST(OptionsTest, LocalCommRes) {
  EngineOptions o = ExpectOk(With(kCommRes, ""));
  EXPECT_TRUE(o.local_device_ip.empty());

  o = ExpectOk(With(kCommRes, R"({"server_list":[{"device":[{"device_id":"0","device_ip":"10.0.0.1"}]}]})"));
  EXPECT_EQ(o.local_device_ip, "10.0.0.1");

  // A fuller rank table: extra fields are allowed, numeric ids too, ip optional.
  o = ExpectOk(With(kCommRes, R"({"status":"completed","version":"1.0","server_count":"1",
      "server_list":[{"server_id":"node0","device":[{"device_id":3,"rank_id":"0"}]}]})"));
  EXPECT_TRUE(o.local_device_ip.empty());

  o = ExpectOk(With(kCommRes, R"({"server_list":[{"device":[{"device_id":"1","device_ip":"fe80::1"}]}]})"));
  EXPECT_EQ(o.local_device_ip, "fe80::1");

  for (const char* bad : {
           "{",                                                           // malformed
           "[]",                                                          // not an object
           "{}",                                                          // no server_list
           R"({"server_list":{}})",                                       // not an array
           R"({"server_list":[]})",                                       // empty
           R"({"server_list":[1]})",                                      // entry not an object
           R"({"server_list":[{}]})",                                     // no device
           R"({"server_list":[{"device":{}}]})",                          // device not an array
           R"({"server_list":[{"device":[1]}]})",                         // device entry not an object
           R"({"server_list":[{"device":[{"device_ip":"10.0.0.1"}]}]})",  // no device_id
           R"({"server_list":[{"device":[{"device_id":true}]}]})",        // id wrong type
           R"({"server_list":[{"device":[{"device_id":-1}]}]})",          // id negative
           R"({"server_list":[{"device":[{"device_id":"0","device_ip":"host"}]}]})",  // ip not numeric
           R"({"server_list":[{"device":[{"device_id":"0","device_ip":1}]}]})",       // ip wrong type
       }) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kCommRes, bad), kCommRes);
  }
}

TEST(OptionsTest, TransferBackend) {
  EXPECT_EQ(ExpectOk(With(kBackend, "auto")).backend, "auto");
  EXPECT_EQ(ExpectOk(With(kBackend, "tcp")).backend, "tcp");
  EXPECT_EQ(ExpectOk(With(kBackend, "shm")).backend, "shm");
  EXPECT_EQ(ExpectOk(With(kBackend, "hixl")).backend, "auto");
  for (const char* bad : {"bogus", "", "TCP", "no-such-path"}) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kBackend, bad), kBackend);
  }
}

TEST(OptionsTest, TcpConnectionsPerLink) {
  EXPECT_EQ(ExpectOk(With(kConns, "1")).tcp_connections, 1u);
  EXPECT_EQ(ExpectOk(With(kConns, "64")).tcp_connections, 64u);
  for (const char* bad : {"0", "65", "-1", "x", "", "100000000000000000000"}) {
    SCOPED_TRACE(bad);
    ExpectInvalid(With(kConns, bad), kConns);
  }
}

TEST(OptionsTest, LinkToken) {
  EXPECT_EQ(ExpectOk(With("llm.LinkToken", "s3cret")).link_token, "s3cret");
}

TEST(OptionsTest, UnknownKeysIgnored) {
  OptionMap m = Base();
  m["ge.exec.deviceId"] = "whatever";
  m["llm.SomethingElse"] = "{";
  m[""] = "";
  EngineOptions o = ExpectOk(m);
  EXPECT_EQ(o.device_id, 0);
}

TEST(OptionsTest, AllTogether) {
  OptionMap m = {{"llm.DeviceId", "3"},
                 {"llm.ListenIpInfo", "0.0.0.0:26001"},
                 {"llm.SyncKvCacheWaitTime", "250"},
                 {"llm.EnableSwitchRole", "1"},
                 {"llm.TransferBackend", "tcp"},
                 {"llm.TcpConnectionsPerLink", "8"}};
  EngineOptions o = ExpectOk(m);
  EXPECT_EQ(o.device_id, 3);
  EXPECT_TRUE(o.listen);
  EXPECT_EQ(o.listen_host, "0.0.0.0");
  EXPECT_EQ(o.listen_port, 26001);
  EXPECT_EQ(o.sync_wait_ms, 250);
  EXPECT_TRUE(o.enable_set_role);
  EXPECT_EQ(o.backend, "tcp");
  EXPECT_EQ(o.tcp_connections, 8u);
}

TEST(OptionsTest, MemoryPoolsPerPlacement) {
  EngineOptions o = ExpectOk(With("llm.MemPoolConfig", R"({"memory_size": 65536, "page_shift": 12})"));
  EXPECT_EQ(o.device_pool.memory_size, 65536u);
  EXPECT_EQ(o.device_pool.page_shift, 12u);
  EXPECT_EQ(o.host_pool.memory_size, 0u);
  o = ExpectOk(With("llm.HostMemPoolConfig", R"({"memory_size": 4096})"));
  EXPECT_EQ(o.host_pool.memory_size, 4096u);
  EXPECT_EQ(o.device_pool.memory_size, 0u);
  ExpectInvalid(With("llm.MemPoolConfig", R"({"page_shift": 12})"), "llm.MemPoolConfig");
  ExpectInvalid(With("llm.HostMemPoolConfig", "64MiB"), "llm.HostMemPoolConfig");
}

}  // namespace
}  // namespace lldd
