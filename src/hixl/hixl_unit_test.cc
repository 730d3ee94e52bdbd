// Unit tests of the HIXL front end's parts: engine names, the address ->
// region map and its wire form, the option mapping.
#include <gtest/gtest.h>

#include "adxl/adxl_types.h"
#include "common/rdma_devices.h"
#include "hixl/engine_name.h"
#include "hixl/hixl_options.h"
#include "hixl/hixl_types.h"
#include "hixl/mem_map.h"
#include "memory/memory_kind.h"
#include "transport/registry.h"

namespace lldd::hixl_impl {
namespace {

TEST(EngineNameTest, ParsesEveryForm) {
  EngineName n;
  ASSERT_TRUE(ParseEngineName("10.0.0.1:16000", &n).ok());
  EXPECT_EQ(n.host, "10.0.0.1");
  EXPECT_EQ(n.port, 16000);
  EXPECT_TRUE(n.listens());
  ASSERT_TRUE(ParseEngineName("10.0.0.1", &n).ok());
  EXPECT_FALSE(n.listens());
  EXPECT_EQ(n.canonical, "10.0.0.1");
  ASSERT_TRUE(ParseEngineName("10.0.0.1:0", &n).ok());  // port 0: a client
  EXPECT_FALSE(n.listens());
  ASSERT_TRUE(ParseEngineName("[fe80::1]:7", &n).ok());
  EXPECT_EQ(n.host, "fe80::1");
  EXPECT_EQ(n.canonical, "[fe80::1]:7");
  ASSERT_TRUE(ParseEngineName("[::1]", &n).ok());
  EXPECT_EQ(n.canonical, "[::1]");
  for (const char* bad : {"", ":1", "host:1", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:-1", "::1", "[::1]7", "[::1]:x",
                          "[1.2.3.4]", "1.2.3.4:5:6"}) {
    Result r = ParseEngineName(bad, &n);
    EXPECT_EQ(r.code(), llm_datadist::LLM_PARAM_INVALID) << bad;
  }
}

TEST(EngineNameTest, ClusterIdIsStableAndDistinct) {
  EXPECT_EQ(ClusterIdOf("1.2.3.4:5"), ClusterIdOf("1.2.3.4:5"));
  EXPECT_NE(ClusterIdOf("1.2.3.4:5"), ClusterIdOf("1.2.3.4:6"));
  EXPECT_NE(ClusterIdOf(""), 0u);
}

TEST(MemMapTest, ResolvesOnlyWhollyContainedRanges) {
  MemMap m;
  ASSERT_TRUE(m.Add({1000, 100, 1, kHostRegistered, 11}).ok());
  ASSERT_TRUE(m.Add({2000, 50, 2, kHostRegistered, 12}).ok());
  ASSERT_NE(m.Find(1000, 100), nullptr);
  EXPECT_EQ(m.Find(1050, 50)->region_id, 1u);
  EXPECT_EQ(m.Find(2000, 1)->region_id, 2u);
  EXPECT_EQ(m.Find(1050, 51), nullptr);  // one past the end
  EXPECT_EQ(m.Find(999, 2), nullptr);
  EXPECT_EQ(m.Find(1100, 1), nullptr);
  EXPECT_EQ(m.Find(1090, 920), nullptr);  // spans both
  EXPECT_EQ(m.Find(1000, 0), nullptr);
  EXPECT_EQ(m.Find(UINT64_MAX - 1, 4), nullptr);
  // An overlapping wider registration serves what the narrow one cannot.
  ASSERT_TRUE(m.Add({1500, 1000, 3, kHostRegistered, 13}).ok());
  EXPECT_EQ(m.Find(2040, 20)->region_id, 3u);
  EXPECT_EQ(m.FindExact(2000, 50)->cache_id, 12);
  EXPECT_EQ(m.FindExact(2000, 51), nullptr);
  EXPECT_TRUE(m.RemoveByCache(12));
  EXPECT_FALSE(m.RemoveByCache(12));
  EXPECT_EQ(m.Find(2000, 1)->region_id, 3u);
  EXPECT_FALSE(m.Add({5, 0, 4, kHostRegistered, 14}).ok());
  EXPECT_FALSE(m.Add({UINT64_MAX - 2, 8, 4, kHostRegistered, 14}).ok());
}

TEST(MemMapTest, ListRoundTripsAndRejectsMalformed) {
  std::vector<MemEntry> in = {{1000, 100, 1, kHostRegistered, 0}, {1 << 20, 4096, 9, kDeviceMemory, 0}};
  std::vector<MemEntry> out;
  auto bytes = EncodeMemList(in);
  ASSERT_TRUE(DecodeMemList(bytes, &out).ok());
  EXPECT_EQ(out, in);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    std::vector<uint8_t> shorter(bytes.begin(), bytes.begin() + cut);
    EXPECT_FALSE(DecodeMemList(shorter, &out).ok()) << cut;
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(DecodeMemList(longer, &out).ok());
  auto huge = bytes;
  huge[3] = 0x7F;  // a count of about 2^31
  EXPECT_FALSE(DecodeMemList(huge, &out).ok());
  EXPECT_FALSE(DecodeMemList(EncodeMemList({{1, 0, 1, kHostRegistered, 0}}), &out).ok());            // empty
  EXPECT_FALSE(DecodeMemList(EncodeMemList({{UINT64_MAX, 2, 1, kHostRegistered, 0}}), &out).ok());   // wraps
  EXPECT_FALSE(DecodeMemList(EncodeMemList({{1, 2, 1, 0x40, 0}}), &out).ok());                       // unknown kind
  EXPECT_TRUE(DecodeMemList(EncodeMemList({}), &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(HixlOptionsTest, MapsProtocolsAndNamesBadKeys) {
  HixlOptions o;
  ASSERT_TRUE(ParseHixlOptions({{::hixl::OPTION_GLOBAL_RESOURCE_CONFIG,
                                 R"({"comm_resource_config.protocol_desc": "roce:device"})"}},
                               &o)
                  .ok());
  const auto backend = o.engine.find(llm_datadist::OPTION_TRANSFER_BACKEND);
  ASSERT_NE(backend, o.engine.end());
  // RDMA protocols run as RDMA (ucx) only where there is an RDMA device.
  EXPECT_EQ(backend->second, IsRegisteredTransport("ucx") && lldd::HasRdmaDevice() ? "ucx" : "tcp");
  ASSERT_TRUE(ParseHixlOptions({{::hixl::OPTION_GLOBAL_RESOURCE_CONFIG,
                                 R"({"comm_resource_config.protocol_desc": ["hccs:device"]})"}},
                               &o)
                  .ok());
  EXPECT_EQ(o.engine.count(llm_datadist::OPTION_TRANSFER_BACKEND), 0u);
  EXPECT_EQ(o.engine.count(llm_datadist::OPTION_DEVICE_ID), 1u);
  ASSERT_TRUE(ParseHixlOptions({{"llm.TransferBackend", "tcp"}, {::hixl::OPTION_AUTO_CONNECT, "1"}}, &o).ok());
  EXPECT_TRUE(o.auto_connect);
  EXPECT_EQ(o.engine[llm_datadist::OPTION_TRANSFER_BACKEND], "tcp");
  Result r = ParseHixlOptions({{"Bogus", "1"}}, &o);
  EXPECT_EQ(r.code(), llm_datadist::LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("Bogus"), std::string::npos);
  r = ParseHixlOptions({{::hixl::OPTION_GLOBAL_RESOURCE_CONFIG, R"({"connect_pool.thread_num": "65"})"}}, &o);
  EXPECT_NE(r.message().find("connect_pool.thread_num"), std::string::npos);
  r = ParseHixlOptions({{::hixl::OPTION_GLOBAL_RESOURCE_CONFIG, R"({"channel_pool.high_waterline": "0.3"})"}}, &o);
  EXPECT_EQ(r.code(), llm_datadist::LLM_PARAM_INVALID);
  r = ParseHixlOptions({{::hixl::OPTION_LOCAL_COMM_RES, "[1]"}}, &o);
  EXPECT_NE(r.message().find(::hixl::OPTION_LOCAL_COMM_RES), std::string::npos);
}

// The adxl API's keys are the same options under another name: the same
// values pass and the same mistakes fail, naming the key as given.
TEST(HixlOptionsTest, AcceptsTheAdxlSpellings) {
  HixlOptions o;
  EXPECT_TRUE(ParseHixlOptions({{::adxl::OPTION_RDMA_TRAFFIC_CLASS, "132"},
                                {::adxl::OPTION_RDMA_SERVICE_LEVEL, "4"},
                                {::adxl::OPTION_BUFFER_POOL, "4:8"},
                                {::adxl::OPTION_LOCAL_COMM_RES, "{}"},
                                {::adxl::OPTION_AUTO_CONNECT, "1"}},
                               &o)
                  .ok());
  EXPECT_TRUE(o.auto_connect);
  const std::pair<const char*, const char*> bad[] = {{::adxl::OPTION_RDMA_TRAFFIC_CLASS, "130"},
                                                     {::adxl::OPTION_RDMA_SERVICE_LEVEL, "8"},
                                                     {::adxl::OPTION_BUFFER_POOL, "4"},
                                                     {::adxl::OPTION_LOCAL_COMM_RES, "[1]"}};
  for (const auto& [key, value] : bad) {
    Result r = ParseHixlOptions({{key, value}}, &o);
    EXPECT_EQ(r.code(), llm_datadist::LLM_PARAM_INVALID) << key;
    EXPECT_NE(r.message().find(key), std::string::npos) << r.message();
  }
  Result r = ParseHixlOptions({{"adxl.Bogus", "1"}}, &o);
  EXPECT_EQ(r.code(), llm_datadist::LLM_PARAM_INVALID);
  EXPECT_NE(r.message().find("adxl.Bogus"), std::string::npos);
}

}  // namespace
}  // namespace lldd::hixl_impl
