// dsv3 serve: request parsing fuzzed directly, then the HTTP server in-process over the fixture
// models, checked against transformers' reference outputs (tests/data/ref.json + logits).
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "chat/chat_template.h"
#include "runtime/engine.h"
#include "server/disk_cache.h"
#include "server/request.h"
#include "server/token_mask.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace dsv3;

namespace {

const json& ref() {
  static json r = json::parse(std::ifstream(std::string(DSV3_TEST_DATA) + "/ref.json"));
  return r;
}

std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(f)), {});
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Parser fuzzing: random and mutated bodies may only ever produce ApiError.

std::string mutate(std::string s, std::mt19937& rng) {
  static const std::string alphabet = "{}[]\",:0123456789-.eE truefalsnul\\\xff\xc3";
  const int edits = 1 + static_cast<int>(rng() % 6);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    const size_t pos = rng() % s.size();
    switch (rng() % 4) {
      case 0: s.erase(pos, 1 + rng() % 4); break;
      case 1: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
      case 2: s[pos] = alphabet[rng() % alphabet.size()]; break;
      default: s.insert(pos, s.substr(rng() % s.size(), rng() % 16)); break;
    }
  }
  return s;
}

json random_value(std::mt19937& rng, int depth) {
  switch (rng() % (depth > 3 ? 6 : 8)) {
    case 0: return nullptr;
    case 1: return rng() % 2 == 0;
    case 2: return static_cast<int64_t>(rng()) - (1ll << 31);
    case 3: return (static_cast<double>(rng()) / 1e6) * (rng() % 2 ? -1 : 1);
    case 4: {
      static const char* strs[] = {"", "a", "<｜User｜>", "秋天", "user", "system", "text", "\n"};
      return std::string(strs[rng() % 8]);
    }
    case 5: return static_cast<int64_t>(rng() % 3000);
    case 6: {
      json a = json::array();
      for (int i = rng() % 4; i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      static const char* keys[] = {"role", "content", "prompt", "max_tokens", "temperature", "messages", "tool_calls",
                                   "function", "name", "arguments", "text", "type", "stop", "logprobs", "echo"};
      json o = json::object();
      for (int i = rng() % 4; i > 0; --i) o[keys[rng() % 15]] = random_value(rng, depth + 1);
      return o;
    }
  }
}

void parse_all(const std::string& body, const server::ModelInfo& m) {
  try {
    const auto j = server::parse_body(body);
    for (int which = 0; which < 4; ++which) {
      try {
        if (which == 0) server::parse_completion(j, m);
        if (which == 1) server::parse_chat(j, m);
        if (which == 2) server::parse_tokenize(j, m);
        if (which == 3) server::parse_detokenize(j, m);
      } catch (const server::ApiError& e) {
        ASSERT_EQ(e.status, 400) << body;
      }
    }
  } catch (const server::ApiError& e) {
    ASSERT_EQ(e.status, 400) << body;
  }
}

const std::vector<std::string> kSeeds = {
    R"({"model":"m","prompt":[0,5,7],"max_tokens":4,"echo":true,"logprobs":3,"temperature":0})",
    R"({"prompt":"Hello world","max_tokens":8,"stop":["\n","."],"stream":true,"stream_options":{"include_usage":true}})",
    R"({"prompt":[[1,2],[3,4]],"n":2,"seed":7,"top_p":0.9,"ignore_eos":true})",
    R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":5,"logprobs":true,"top_logprobs":2})",
    R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"}]},{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","content":"1"}]})",
    R"({"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false})",
    R"({"tokens":[0,1,2,3]})",
    R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"<think>","prefix":true}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object","properties":{"a":{"type":["integer","null"]},"b":{"type":"array","items":{"enum":[1,"x",null]},"minItems":1}},"required":["a"],"additionalProperties":false}}}})",
    R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"x":{"type":"string"}},"required":["x"]},"strict":true}}],"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false})",
    R"({"prompt":"def f(","suffix":"\n  return 1","max_tokens":4,"response_format":{"type":"json_object"}})",
};

TEST(ServerParse, FuzzedBodiesOnlyGiveApiErrors) {
  server::ModelInfo ids_only;
  ids_only.vocab_size = 2048;
  ids_only.ctx = 256;
  auto tok = Tokenizer::load(DSV3_TOKENIZER_DIR);
  auto tmpl = ChatTemplate::load(DSV3_TOKENIZER_DIR);
  server::ModelInfo full = ids_only;
  full.vocab_size = 129280;
  full.tok = tok.get();
  full.tmpl = &tmpl;
  full.vocab = std::make_shared<const server::VocabIndex>(*tok);  // response_format and tools get parsed too
  std::mt19937 rng(1234);
  int n = 0;
  for (int i = 0; i < 4000; ++i) {
    const std::string body = i % 2 ? mutate(kSeeds[rng() % kSeeds.size()], rng) : random_value(rng, 0).dump();
    parse_all(body, ids_only);
    parse_all(body, full);
    ++n;
  }
  // Edge cases by hand: deep nesting, huge numbers, invalid UTF-8, empty.
  parse_all(std::string(100000, '[') + std::string(100000, ']'), full);
  parse_all(R"({"prompt":[1e400],"max_tokens":99999999999999999999999})", full);
  parse_all("{\"prompt\":\"\xff\xfe\"}", full);
  parse_all("", full);
  parse_all("null", full);
  EXPECT_EQ(n, 4000);
}

std::string over_long_prompt(int n);

TEST(ServerParse, RejectsBadFieldsWithTheirName) {
  server::ModelInfo m;
  m.vocab_size = 2048;
  m.ctx = 256;
  auto param_of = [&](const std::string& body) -> std::string {
    try {
      server::parse_completion(server::parse_body(body), m);
    } catch (const server::ApiError& e) {
      EXPECT_EQ(e.status, 400);
      return e.param;
    }
    return "(accepted)";
  };
  EXPECT_EQ(param_of(R"({"prompt":[1],"max_tokens":-1})"), "max_tokens");
  EXPECT_EQ(param_of(R"({"prompt":[1],"max_tokens":100000})"), "max_tokens");
  EXPECT_EQ(param_of(R"({"prompt":[1],"temperature":"hot"})"), "temperature");
  EXPECT_EQ(param_of(R"({"prompt":[1],"temperature":-0.5})"), "temperature");
  EXPECT_EQ(param_of(R"({"prompt":[1, 2048]})"), "prompt");
  EXPECT_EQ(param_of(R"({"prompt":[1, -3]})"), "prompt");
  EXPECT_EQ(param_of(R"({"max_tokens":3})"), "prompt");
  EXPECT_EQ(param_of(R"({"prompt":"text needs a tokenizer"})"), "prompt");
  EXPECT_EQ(param_of(R"({"prompt":[1],"bogus":1})"), "bogus");
  EXPECT_EQ(param_of(R"({"prompt":[1],"logprobs":21})"), "logprobs");
  EXPECT_EQ(param_of(R"({"prompt":[1],"max_tokens":0})"), "max_tokens");
  EXPECT_EQ(param_of(over_long_prompt(257)), "prompt");
  EXPECT_EQ(param_of(R"({"prompt":[1],"response_format":{"type":"json_object"}})"), "response_format");
  EXPECT_EQ(param_of(R"({"prompt":[1],"response_format":{"type":"xml"}})"), "response_format.type");
  EXPECT_EQ(param_of(R"({"prompt":[1],"response_format":"json"})"), "response_format");
  EXPECT_EQ(param_of(R"({"prompt":[1],"response_format":{"type":"text"}})"), "(accepted)");
  EXPECT_EQ(param_of(R"({"prompt":[1],"max_tokens":4,"temperature":0})"), "(accepted)");
}

// ---------------------------------------------------------------------------------------------
// The server in-process.

struct Running {
  std::unique_ptr<Model> model;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<ChatTemplate> tmpl;
  std::unique_ptr<server::Server> srv;
  std::thread th;
  int port = 0;
  Running(const std::string& dir, int64_t max_batch, const server::ServerOptions& so, int64_t ctx = 0,
          std::shared_ptr<PrefixStore> store = nullptr) {
    ModelOptions mo;
    mo.max_seqs = max_batch;
    mo.ctx = ctx;
    model = std::make_unique<Model>(dir, mo);
    EngineOptions eo;
    eo.max_batch = max_batch;
    eo.prefill_chunk = 64;  // several chunks for the 200/300-token prompts
    eo.store = std::move(store);
    engine = std::make_unique<Engine>(*model, eo);
    if (Tokenizer::available(dir)) {
      tok = Tokenizer::load(dir);
      tok->set_vocab_limit(static_cast<int32_t>(model->config().vocab_size));
      tmpl = std::make_unique<ChatTemplate>(ChatTemplate::load(dir));
    }
    server::ServerOptions o = so;
    o.host = "127.0.0.1";
    o.port = 0;
    srv = std::make_unique<server::Server>(*engine, tok.get(), tmpl.get(), o);
    port = srv->bind();
    th = std::thread([this] { srv->listen(); });
  }
  ~Running() {
    srv->shutdown();
    th.join();
    srv.reset();
  }
  httplib::Client client(const std::string& key = "sk-test") const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(300, 0);
    if (!key.empty()) c.set_bearer_token_auth(key);
    return c;
  }
};

json post(const Running& r, const std::string& path, const json& body, int expect = 200) {
  auto c = r.client();
  auto res = c.Post(path, body.dump(), "application/json");
  EXPECT_TRUE(res) << path;
  if (!res) return json();
  EXPECT_EQ(res->status, expect) << res->body;
  return json::parse(res->body);
}

// SSE: the `data:` payloads until [DONE]; `done` tells whether [DONE] came.
std::vector<json> post_stream(const Running& r, const std::string& path, json body, bool* done = nullptr) {
  body["stream"] = true;
  auto c = r.client();
  std::string buf;
  std::vector<json> events;
  bool got_done = false;
  auto res = c.Post(path, httplib::Headers{}, body.dump(), "application/json");
  EXPECT_TRUE(res);
  if (!res) return events;
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  buf = res->body;
  size_t k;
  while ((k = buf.find("\n\n")) != std::string::npos) {
    const std::string ev = buf.substr(0, k);
    buf.erase(0, k + 2);
    if (ev.rfind("data: ", 0) != 0) continue;
    if (ev == "data: [DONE]") got_done = true;
    else events.push_back(json::parse(ev.substr(6)));
  }
  EXPECT_TRUE(got_done);
  if (done) *done = got_done;
  return events;
}

std::string fixture(const char* name) { return std::string(DSV3_FIXTURES) + "/" + name; }

class ServerFp8 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server::ServerOptions o;
    o.api_key = "sk-test";
    o.parallel = 64;
    srv_ = new Running(fixture("v3-fp8"), 8, o);
  }
  static void TearDownTestSuite() {
    delete srv_;
    srv_ = nullptr;
  }
  static Running* srv_;
};
Running* ServerFp8::srv_ = nullptr;

TEST_F(ServerFp8, ScoringMatchesTransformersLogprobs) {
  const json cases = ref()["v3-fp8"];
  for (int p = 0; p < 3; ++p) {
    const std::vector<int32_t> prompt = cases[p]["prompt"];
    if (prompt.size() < 2) continue;
    const std::vector<float> logits = read_f32(std::string(DSV3_TEST_DATA) + "/v3-fp8_logits_" + std::to_string(p) + ".f32");
    ASSERT_EQ(logits.size(), prompt.size() * 2048);
    const json r = post(*srv_, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 2}});
    const json& lp = r["choices"][0]["logprobs"];
    ASSERT_EQ(lp["token_logprobs"].size(), prompt.size());
    EXPECT_TRUE(lp["token_logprobs"][0].is_null());
    EXPECT_EQ(lp["tokens"][1], "token_id:" + std::to_string(prompt[1]));
    EXPECT_EQ(r["usage"]["prompt_tokens"], prompt.size());
    EXPECT_EQ(r["usage"]["completion_tokens"], 0);
    double worst = 0;
    for (size_t i = 1; i < prompt.size(); ++i) {
      const float* row = logits.data() + (i - 1) * 2048;
      double mx = row[0], sum = 0;
      for (int v = 0; v < 2048; ++v) mx = std::max(mx, static_cast<double>(row[v]));
      for (int v = 0; v < 2048; ++v) sum += std::exp(row[v] - mx);
      const double want = row[prompt[i]] - mx - std::log(sum);
      worst = std::max(worst, std::fabs(lp["token_logprobs"][i].get<double>() - want));
      ASSERT_EQ(lp["top_logprobs"][i].size(), 2u);
    }
    EXPECT_LT(worst, 0.02) << "prompt " << p;
  }
}

TEST_F(ServerFp8, GreedyMatchesTransformers) {
  for (const json& c : ref()["v3-fp8"]) {
    const json r = post(*srv_, "/v1/completions",
                        {{"prompt", c["prompt"]}, {"max_tokens", 32}, {"temperature", 0}, {"ignore_eos", true}});
    EXPECT_EQ(r["choices"][0]["token_ids"], c["greedy"]);
    EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(r["usage"]["completion_tokens"], 32);
  }
}

TEST_F(ServerFp8, ConcurrentRequestsEachGetTheirOwnContinuation) {
  // Prompt + the first k reference tokens must continue with the reference tokens after k.
  struct Job {
    json prompt;
    std::vector<int> want;
    bool stream;
  };
  std::vector<Job> jobs;
  const json cases = ref()["v3-fp8"];
  for (int p = 0; p < 3; ++p)
    for (int k : {0, 4, 8, 12}) {
      std::vector<int> prompt = cases[p]["prompt"], greedy = cases[p]["greedy"];
      prompt.insert(prompt.end(), greedy.begin(), greedy.begin() + k);
      jobs.push_back({prompt, std::vector<int>(greedy.begin() + k, greedy.begin() + k + 16), (k / 4) % 2 == 1});
    }
  ASSERT_EQ(jobs.size(), 12u);
  std::vector<json> got(jobs.size());
  std::vector<std::thread> th;
  for (size_t i = 0; i < jobs.size(); ++i)
    th.emplace_back([&, i] {
      const json body = {{"prompt", jobs[i].prompt}, {"max_tokens", 16}, {"temperature", 0}, {"ignore_eos", true}};
      if (!jobs[i].stream) {
        got[i] = post(*srv_, "/v1/completions", body)["choices"][0]["token_ids"];
        return;
      }
      json ids = json::array();
      for (const json& ev : post_stream(*srv_, "/v1/completions", body))
        for (const json& ch : ev["choices"])
          if (ch.contains("token_ids"))
            for (const json& t : ch["token_ids"]) ids.push_back(t);
      got[i] = ids;
    });
  for (auto& t : th) t.join();
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(got[i], json(jobs[i].want)) << "request " << i;
}

TEST_F(ServerFp8, RepeatedPromptHitsThePrefixCache) {
  std::vector<int> prompt(300);
  std::mt19937 rng(7);
  for (auto& t : prompt) t = 2 + static_cast<int>(rng() % 2000);
  const json body = {{"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0}};
  const json a = post(*srv_, "/v1/completions", body);
  const json b = post(*srv_, "/v1/completions", body);
  EXPECT_EQ(a["usage"]["prompt_tokens"], 300);
  EXPECT_GE(b["usage"]["prompt_cache_hit_tokens"].get<int>(), 192);
  EXPECT_EQ(b["usage"]["prompt_cache_hit_tokens"].get<int>() + b["usage"]["prompt_cache_miss_tokens"].get<int>(), 300);
  EXPECT_EQ(a["choices"][0]["token_ids"], b["choices"][0]["token_ids"]);
}

std::string over_long_prompt(int n) {  // the fixture's context is 512
  std::string s = R"({"prompt":[5)";
  for (int i = 1; i < n; ++i) s += ",5";
  return s + "]}";
}

TEST_F(ServerFp8, BadRequestsGet400AndTheServerStaysHealthy) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/v1/completions", "{\"prompt\": [1, 2"},
      {"/v1/completions", R"({"prompt":[1,2],"max_tokens":-5})"},
      {"/v1/completions", over_long_prompt(600)},
      {"/v1/completions", R"({"prompt":[1,99999]})"},
      {"/v1/completions", R"({"max_tokens":4})"},
      {"/v1/completions", R"({"prompt":[1],"temperature":"warm"})"},
      {"/v1/completions", R"({"prompt":[1],"temperature":-1})"},
      {"/v1/chat/completions", R"({"max_tokens":4})"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})"},  // no tokenizer here
      {"/v1/completions", R"([1,2,3])"},
  };
  for (const auto& [path, body] : bad) {
    auto c = srv_->client();
    auto res = c.Post(path, body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << body.substr(0, 80);
    const json e = json::parse(res->body);
    EXPECT_TRUE(e["error"]["message"].is_string());
    EXPECT_TRUE(e["error"].contains("type") && e["error"].contains("param") && e["error"].contains("code"));
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
  }
}

TEST_F(ServerFp8, ApiKeyIsRequired) {
  for (const std::string key : {"", "sk-wrong"}) {
    auto c = srv_->client(key);
    auto res = c.Post("/v1/completions", R"({"prompt":[1],"max_tokens":1})", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    EXPECT_EQ(json::parse(res->body)["error"]["code"], "invalid_api_key");
  }
  auto c = srv_->client();
  auto res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["data"][0]["object"], "model");
}

TEST_F(ServerFp8, HttpFuzzNeverBreaksTheServer) {
  std::mt19937 rng(99);
  auto c = srv_->client();
  for (int i = 0; i < 150; ++i) {
    const std::string body = mutate(kSeeds[rng() % 3], rng);
    auto res = c.Post(i % 2 ? "/v1/completions" : "/v1/chat/completions", body, "application/json");
    ASSERT_TRUE(res);
    if (res->status != 200) {
      EXPECT_TRUE(json::parse(res->body)["error"].is_object()) << body;
    }
  }
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

int inflight(const Running& r) {
  auto c = r.client();
  auto res = c.Get("/metrics");
  if (!res) return -1;
  const std::string key = "\ndsv3_requests_inflight ";
  const size_t p = res->body.find(key);
  return p == std::string::npos ? -1 : std::stoi(res->body.substr(p + key.size()));
}

TEST(ServerLimits, FullQueueAnswers429AndDisconnectFreesTheSlot) {
  server::ServerOptions o;
  o.parallel = 2;
  Running r(fixture("v3-fp8"), 1, o);
  const json long_req = {{"prompt", {0, 5, 9}}, {"max_tokens", 500}, {"ignore_eos", true}, {"stream", true}};
  std::atomic<int> chunks{0};
  std::atomic<bool> checked{false};
  std::vector<std::thread> streams;
  for (int i = 0; i < 2; ++i)
    streams.emplace_back([&] {
      auto c = r.client("");
      // Read a few chunks and, once the 429 below has been seen (until then both slots must
      // stay taken), hang up: the receiver returning false closes the connection.
      int seen = 0;
      httplib::Request q;
      q.method = "POST";
      q.path = "/v1/completions";
      q.body = long_req.dump();
      q.set_header("Content-Type", "application/json");
      q.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
        ++chunks;
        return ++seen < 4 || !checked;
      };
      c.send(q);
    });
  while (inflight(r) < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  {
    auto c = r.client("");
    auto res = c.Post("/v1/completions", R"({"prompt":[1,2],"max_tokens":2})", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 429);
    EXPECT_EQ(json::parse(res->body)["error"]["code"], "rate_limit_exceeded");
  }
  checked = true;
  for (auto& t : streams) t.join();
  // Both clients hung up long before 500 tokens: their slots must come back.
  for (int i = 0; i < 2000 && inflight(r) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(inflight(r), 0);
  const json after = post(r, "/v1/completions", {{"prompt", {1, 2}}, {"max_tokens", 3}, {"ignore_eos", true}});
  EXPECT_EQ(after["usage"]["completion_tokens"], 3);
}

// Overload: 256 clients at once against --parallel 64. Every one gets an answer, 200 or a 429
// JSON error; none sees its connection refused or reset.
TEST(ServerLimits, OverloadGives200Or429NeverAReset) {
  server::ServerOptions o;
  o.parallel = 64;
  Running r(fixture("v3-fp8"), 8, o);
  constexpr int kClients = 256;
  std::atomic<int> ok{0}, busy{0}, other{0}, failed{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> th;
  for (int i = 0; i < kClients; ++i)
    th.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", r.port);
      c.set_read_timeout(120, 0);
      c.set_connection_timeout(30, 0);
      while (!go) std::this_thread::yield();
      const json body = {{"prompt", {0, 5, i % 100}}, {"max_tokens", 16}, {"ignore_eos", true}, {"stream", i % 2 == 0}};
      auto res = c.Post("/v1/completions", body.dump(), "application/json");
      if (!res) {
        ++failed;
        ADD_FAILURE() << "client " << i << ": " << httplib::to_string(res.error());
      } else if (res->status == 200) {
        ++ok;
      } else if (res->status == 429 && json::parse(res->body)["error"]["code"] == "rate_limit_exceeded") {
        ++busy;
      } else {
        ++other;
        ADD_FAILURE() << res->status << " " << res->body;
      }
    });
  go = true;
  for (auto& t : th) t.join();
  std::printf("[ overload ] %d x 200, %d x 429, %d other, %d failed\n", ok.load(), busy.load(), other.load(), failed.load());
  EXPECT_EQ(ok + busy, kClients);
  EXPECT_GE(ok, 64);
}

// A non-streaming client that gives up (here: a read timeout) frees its slots at once: the
// server notices the closed connection and cancels, instead of generating 32,000 tokens (about
// ten seconds here) for nobody.
TEST(ServerLimits, NonStreamingClientThatHangsUpIsCancelled) {
  server::ServerOptions o;
  Running r(fixture("v3-fp8"), 1, o);
  const json body = {{"prompt", {{0, 5, 9}, {0, 6}, {0, 7}, {0, 8}}}, {"n", 16}, {"max_tokens", 500}, {"ignore_eos", true}};
  {
    auto c = r.client("");
    c.set_read_timeout(0, 300000);
    const auto res = c.Post("/v1/completions", body.dump(), "application/json");
    EXPECT_FALSE(res) << "the request should still have been running after 0.3 s";
  }  // the client is gone
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 300 && inflight(r) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(inflight(r), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  auto c = r.client();
  const auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  const std::string key = "\ndsv3_generations_cancelled_total ";
  const size_t p = m->body.find(key);
  ASSERT_NE(p, std::string::npos);
  EXPECT_GE(std::stod(m->body.substr(p + key.size())), 1.0);
  // The server still answers.
  const json after = post(r, "/v1/completions", {{"prompt", {1, 2}}, {"max_tokens", 3}, {"ignore_eos", true}});
  EXPECT_EQ(after["usage"]["completion_tokens"], 3);
}

// The e2e-bf16 fixture (real 129280 vocabulary and chat template) with the real tokenizer.json.
fs::path real_vocab_model(const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("dsv3_server_" + tag + "_" + std::to_string(getpid()));
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(fixture("e2e-bf16")))
    fs::copy(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  fs::copy(std::string(DSV3_TOKENIZER_DIR) + "/tokenizer.json", dir / "tokenizer.json",
           fs::copy_options::overwrite_existing);
  return dir;
}

TEST(ServerChat, RealTokenizerMatchesTransformers) {
  const fs::path dir = real_vocab_model("chat");
  {
    server::ServerOptions o;
    Running r(dir.string(), 4, o, 1024);
    int checked = 0;
    for (const json& c : ref()["chat"]) {
      const json tk = post(r, "/tokenize", {{"messages", c["messages"]}, {"add_generation_prompt", c["add_generation_prompt"]}});
      EXPECT_EQ(tk["tokens"], c["ids"]);
      EXPECT_EQ(tk["count"], c["ids"].size());
      if (!c["add_generation_prompt"].get<bool>()) continue;
      const json body = {{"messages", c["messages"]}, {"max_tokens", 24}, {"temperature", 0}, {"ignore_eos", true}};
      const json res = post(r, "/v1/chat/completions", body);
      EXPECT_EQ(res["usage"]["prompt_tokens"], c["ids"].size());
      EXPECT_EQ(res["usage"]["completion_tokens"], 24);
      EXPECT_EQ(res["choices"][0]["message"]["content"], c["greedy_text"]);
      std::string streamed;
      bool saw_usage = false;
      json sbody = body;
      sbody["stream_options"] = {{"include_usage", true}};
      for (const json& ev : post_stream(r, "/v1/chat/completions", sbody)) {
        EXPECT_EQ(ev["object"], "chat.completion.chunk");
        for (const json& ch : ev["choices"])
          if (ch["delta"].contains("content")) streamed += ch["delta"]["content"].get<std::string>();
        if (ev.contains("usage") && !ev["usage"].is_null()) saw_usage = true;
      }
      EXPECT_EQ(streamed, c["greedy_text"]);
      EXPECT_TRUE(saw_usage);
      ++checked;
    }
    EXPECT_EQ(checked, 4);
    // Detokenize round trip and logprobs on the chat endpoint.
    const json d = post(r, "/detokenize", {{"tokens", ref()["chat"][0]["ids"]}});
    EXPECT_EQ(d["prompt"], ref()["chat"][0]["text"]);
    const json lp = post(r, "/v1/chat/completions",
                         {{"messages", ref()["chat"][0]["messages"]}, {"max_tokens", 3}, {"temperature", 0},
                          {"logprobs", true}, {"top_logprobs", 2}, {"ignore_eos", true}});
    ASSERT_EQ(lp["choices"][0]["logprobs"]["content"].size(), 3u);
    EXPECT_EQ(lp["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
    // A stop string cuts the text (and ends generation) where it first appears.
    const std::string full = ref()["chat"][0]["greedy_text"];
    const std::string stop = "vita";  // ASCII inside the reference text
    ASSERT_NE(full.find(stop), std::string::npos);
    const json st = post(r, "/v1/chat/completions",
                         {{"messages", ref()["chat"][0]["messages"]}, {"max_tokens", 24}, {"temperature", 0},
                          {"ignore_eos", true}, {"stop", stop}});
    EXPECT_EQ(st["choices"][0]["message"]["content"], full.substr(0, full.find(stop)));
    EXPECT_EQ(st["choices"][0]["finish_reason"], "stop");
  }
  fs::remove_all(dir);
}

// response_format on the random-weight real-vocabulary model: whatever it samples, the text is
// JSON fitting the schema (the schema leaves only key order and bounded whitespace free, so every
// choice completes and then can only stop), streamed or not, on both endpoints.
TEST(ServerConstrained, ResponseFormatGivesSchemaValidJson) {
  const fs::path dir = real_vocab_model("json");
  {
    server::ServerOptions o;
    Running r(dir.string(), 4, o, 1024);
    const json schema = json::parse(R"({"type":"object","properties":{"ok":{"type":"boolean"},
        "kind":{"enum":["cat","dog",3]},"n":{"type":"null"}},"required":["ok","kind"],"additionalProperties":false})");
    const json rf = {{"type", "json_schema"}, {"json_schema", {{"name", "t"}, {"schema", schema}, {"strict", true}}}};
    const json msgs = json::array({{{"role", "user"}, {"content", "A pet as JSON, please."}}});
    auto check = [](const std::string& text) {
      const json v = json::parse(text);
      ASSERT_TRUE(v.is_object()) << text;
      EXPECT_TRUE(v["ok"].is_boolean()) << text;
      EXPECT_TRUE(v["kind"] == "cat" || v["kind"] == "dog" || v["kind"] == 3) << text;
      for (auto it = v.begin(); it != v.end(); ++it)
        EXPECT_TRUE(it.key() == "ok" || it.key() == "kind" || (it.key() == "n" && it->is_null())) << text;
    };
    for (double temp : {0.0, 1.0}) {
      const json res = post(r, "/v1/chat/completions",
                            {{"messages", msgs}, {"max_tokens", 300}, {"temperature", temp}, {"seed", 4}, {"n", 3},
                             {"response_format", rf}, {"logprobs", true}, {"top_logprobs", 5}});
      for (const json& ch : res["choices"]) {
        EXPECT_EQ(ch["finish_reason"], "stop");
        check(ch["message"]["content"]);
        // Logprobs are over the masked distribution: the first token opens the object.
        const json& first = ch["logprobs"]["content"][0];
        for (const json& t : first["top_logprobs"]) {
          const std::string s = t["token"];
          EXPECT_TRUE(s.find_first_not_of(" \n\t\r") == std::string::npos || s.find('{') != std::string::npos) << s;
          EXPECT_LE(t["logprob"].get<double>(), 0.0);
        }
      }
    }
    std::string streamed;
    for (const json& ev : post_stream(r, "/v1/chat/completions",
                                      {{"messages", msgs}, {"max_tokens", 300}, {"temperature", 1.0}, {"seed", 9},
                                       {"response_format", rf}}))
      for (const json& ch : ev["choices"])
        if (ch["delta"].contains("content")) streamed += ch["delta"]["content"].get<std::string>();
    check(streamed);
    const json cmp = post(r, "/v1/completions", {{"prompt", "JSON:"}, {"max_tokens", 300}, {"temperature", 1.0},
                                                 {"seed", 1}, {"response_format", rf}});
    EXPECT_EQ(cmp["choices"][0]["finish_reason"], "stop");
    check(cmp["choices"][0]["text"]);
    // json_object: a whole object within max_tokens, even from random weights.
    const json obj = post(r, "/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 64}, {"temperature", 1.0},
                                                      {"seed", 2}, {"n", 4}, {"response_format", {{"type", "json_object"}}}});
    for (const json& ch : obj["choices"]) {
      const std::string text = ch["message"]["content"];
      EXPECT_TRUE(json::parse(text, nullptr, false).is_object()) << text;
    }
    // Schema errors are 400s naming the keyword.
    const json bad = post(r, "/v1/chat/completions",
                          {{"messages", msgs}, {"response_format", {{"type", "json_schema"},
                           {"json_schema", {{"schema", {{"type", "string"}, {"pattern", "x"}}}}}}}}, 400);
    EXPECT_EQ(bad["error"]["param"], "response_format.json_schema.schema.pattern");
  }
  fs::remove_all(dir);
}

// A small JSON Schema validator for the subset the grammar compiles (type, properties, required,
// additionalProperties false, enum, items, minItems/maxItems): the tests check outputs with it.
bool schema_valid(const json& s, const json& v, std::string* why) {
  auto fail = [&](const std::string& w) { *why = w + " at " + v.dump(); return false; };
  if (s.contains("enum")) {
    for (const json& e : s["enum"])
      if (e == v && e.type() == v.type()) return true;
    return fail("not in enum");
  }
  if (s.contains("type")) {
    const std::string t = s["type"];
    const bool ok = (t == "object" && v.is_object()) || (t == "array" && v.is_array()) || (t == "string" && v.is_string()) ||
                    (t == "integer" && v.is_number_integer()) || (t == "number" && v.is_number()) ||
                    (t == "boolean" && v.is_boolean()) || (t == "null" && v.is_null());
    if (!ok) return fail("not a " + t);
  }
  if (v.is_object()) {
    const json props = s.value("properties", json::object());
    for (const json& r : s.value("required", json::array()))
      if (!v.contains(r.get<std::string>())) return fail("missing " + r.get<std::string>());
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (props.contains(it.key())) {
        if (!schema_valid(props[it.key()], *it, why)) return false;
      } else if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return fail("extra key " + it.key());
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return fail("too few items");
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return fail("too many items");
    if (s.contains("items"))
      for (const json& x : v)
        if (!schema_valid(s["items"], x, why)) return false;
  }
  return true;
}

// Over 60 requests (different seeds and prompts, greedy and sampled, several schemas the grammar
// was not written against: nested objects, arrays, enums, integers/numbers/booleans/null,
// required), every json_schema answer is schema-valid; over 50 more, every json_object answer is
// a whole object.
// The schemas bound everything the model may write (no free strings), so each answer completes
// within max_tokens: finish_reason is "stop" for all of them.
TEST(ServerConstrained, ManySeedsAndSchemasAreAllValid) {
  const fs::path dir = real_vocab_model("json50");
  {
    server::ServerOptions o;
    Running r(dir.string(), 4, o, 1024);
    const std::vector<json> schemas = {
        json::parse(R"({"type":"object","properties":{"user":{"type":"object","properties":{"id":{"type":"integer"},
            "admin":{"type":"boolean"},"score":{"type":"number"}},"required":["id","admin"],"additionalProperties":false}},
            "required":["user"],"additionalProperties":false})"),
        json::parse(R"({"type":"object","properties":{"tags":{"type":"array","items":{"enum":["a","b","c"]},
            "minItems":1,"maxItems":4},"count":{"type":"integer"}},"required":["tags","count"],"additionalProperties":false})"),
        json::parse(R"({"type":"object","properties":{"x":{"type":"number"},"y":{"type":"integer"},"ok":{"type":"boolean"},
            "z":{"type":"null"}},"required":["x","y","ok","z"],"additionalProperties":false})"),
        json::parse(R"({"type":"array","items":{"type":"object","properties":{"k":{"enum":[1,2,"three",true,null]},
            "v":{"type":"array","items":{"type":"integer"},"maxItems":2}},"required":["k"],"additionalProperties":false},
            "minItems":1,"maxItems":3})"),
        json::parse(R"({"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"object",
            "properties":{"c":{"enum":["deep","deeper"]}},"required":["c"],"additionalProperties":false}},"required":["b"],
            "additionalProperties":false},"flag":{"type":"boolean"}},"required":["a","flag"],"additionalProperties":false})"),
    };
    // Sanitizer builds run ~10x slower: one seed per schema there (the release suite runs all 50).
#if defined(__SANITIZE_ADDRESS__)
    constexpr int kSeeds = 1;
#else
    constexpr int kSeeds = 5;
#endif
    int valid = 0, total = 0, stops = 0;
    for (size_t si = 0; si < schemas.size(); ++si)
      for (int seed = 0; seed < kSeeds; ++seed)
        for (double temp : {0.0, 1.0}) {
          const json rf = {{"type", "json_schema"}, {"json_schema", {{"name", "s" + std::to_string(si)}, {"schema", schemas[si]}}}};
          const json msgs = json::array({{{"role", "user"}, {"content", "Record " + std::to_string(seed * 7 + si) + " as JSON."}}});
          const json res = post(r, "/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 400}, {"temperature", temp},
                                                            {"seed", seed}, {"response_format", rf}});
          const json& ch = res["choices"][0];
          ++total;
          stops += ch["finish_reason"] == "stop";
          EXPECT_EQ(ch["finish_reason"], "stop") << ch.dump();
          const std::string text = ch["message"]["content"];
          std::string why;
          const json v = json::parse(text, nullptr, false);
          if (!v.is_discarded() && schema_valid(schemas[si], v, &why)) ++valid;
          else ADD_FAILURE() << "schema " << si << " seed " << seed << " temp " << temp << ": " << why << "\n" << text;
        }
    // json_object: an object, whatever the model writes in it, and always a whole one: random
    // weights love free strings, so near max_tokens the grammar only lets tokens through that
    // leave room to close (budgets from 8 to 103 tokens here).
    int obj_valid = 0, obj_total = 0, obj_stop = 0;
    for (int seed = 0; seed < 5 * kSeeds; ++seed)
      for (double temp : {0.0, 1.0}) {
        const json msgs = json::array({{{"role", "user"}, {"content", "Object " + std::to_string(seed) + ", please."}}});
        const int max_tokens = 8 + (seed * 19) % 96;
        const json res = post(r, "/v1/chat/completions", {{"messages", msgs}, {"max_tokens", max_tokens},
                                                          {"temperature", temp}, {"seed", seed},
                                                          {"response_format", {{"type", "json_object"}}}});
        const json& ch = res["choices"][0];
        ++obj_total;
        obj_stop += ch["finish_reason"] == "stop";
        const std::string text = ch["message"]["content"];
        if (json::parse(text, nullptr, false).is_object()) ++obj_valid;
        else ADD_FAILURE() << "json_object seed " << seed << " temp " << temp << " max_tokens " << max_tokens << " ("
                           << ch["finish_reason"] << "): " << text;
      }
    std::printf("[ json ] json_schema %d/%d valid (%d stop), json_object %d/%d valid (%d stop)\n", valid, total,
                stops, obj_valid, obj_total, obj_stop);
    EXPECT_EQ(valid, total);
    EXPECT_EQ(total, 10 * kSeeds);
    EXPECT_EQ(obj_valid, obj_total);
  }
  fs::remove_all(dir);
}

// A tokenizer without the FIM tokens: a request with a suffix is a 400 naming "suffix".
TEST(ServerChat, FimWithoutFimTokensIsA400) {
  const fs::path dir = real_vocab_model("nofim");
  {
    json t = json::parse(std::ifstream(dir / "tokenizer.json"));
    json kept = json::array();
    for (const json& a : t["added_tokens"])
      if (a["content"].get<std::string>().find("fim") == std::string::npos) kept.push_back(a);
    ASSERT_EQ(kept.size() + 3, t["added_tokens"].size());
    t["added_tokens"] = kept;
    std::ofstream(dir / "tokenizer.json") << t.dump();
    server::ServerOptions o;
    Running r(dir.string(), 1, o, 1024);
    const json e = post(r, "/v1/completions", {{"prompt", "def f():\n"}, {"suffix", "\n    return 1\n"}, {"max_tokens", 4}}, 400);
    EXPECT_EQ(e["error"]["param"], "suffix") << e.dump();
    EXPECT_EQ(e["error"]["code"], "no_fim_tokens") << e.dump();
    // Without a suffix the same model still completes.
    const json ok = post(r, "/v1/completions", {{"prompt", "def f():\n"}, {"max_tokens", 2}, {"ignore_eos", true}});
    EXPECT_EQ(ok["usage"]["completion_tokens"], 2);
  }
  fs::remove_all(dir);
}

// Function calling, FIM, chat prefix completion and reasoning_content on the real-vocabulary model.
TEST(ServerChat, ToolsFimPrefixAndReasoning) {
  const fs::path dir = real_vocab_model("tools");
  {
    server::ServerOptions o;
    Running r(dir.string(), 4, o, 1024);
    const json tools = json::parse(R"([{"type":"function","function":{"name":"set_unit","description":"Pick a unit",
        "parameters":{"type":"object","properties":{"unit":{"enum":["c","f"]}},"required":["unit"],
        "additionalProperties":false},"strict":true}},
        {"type":"function","function":{"name":"noop","parameters":{"type":"object","properties":{},
        "additionalProperties":false}}}])");
    const json msgs = json::array({{{"role", "user"}, {"content", "Use celsius."}}});
    auto check_call = [](const json& call) {
      EXPECT_EQ(call["type"], "function");
      EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
      const std::string name = call["function"]["name"];
      const json args = json::parse(call["function"]["arguments"].get<std::string>());
      if (name == "set_unit") EXPECT_TRUE(args == json({{"unit", "c"}}) || args == json({{"unit", "f"}})) << args;
      else EXPECT_EQ(name, "noop");
    };
    json body = {{"messages", msgs}, {"tools", tools}, {"tool_choice", "required"}, {"parallel_tool_calls", false},
                 {"max_tokens", 300}, {"temperature", 1.0}, {"seed", 5}, {"n", 2}};
    const json res = post(r, "/v1/chat/completions", body);
    for (const json& ch : res["choices"]) {
      EXPECT_EQ(ch["finish_reason"], "tool_calls") << ch.dump();
      EXPECT_TRUE(ch["message"]["content"].is_null()) << ch.dump();
      ASSERT_EQ(ch["message"]["tool_calls"].size(), 1u) << ch.dump();
      check_call(ch["message"]["tool_calls"][0]);
    }
    body["tool_choice"] = {{"type", "function"}, {"function", {{"name", "set_unit"}}}};
    body["n"] = 1;
    json call;
    std::string finish;
    for (const json& ev : post_stream(r, "/v1/chat/completions", body))
      for (const json& ch : ev["choices"]) {
        if (ch["delta"].contains("tool_calls")) call = ch["delta"]["tool_calls"][0];
        if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
      }
    EXPECT_EQ(finish, "tool_calls");
    EXPECT_EQ(call["index"], 0);
    EXPECT_EQ(call["function"]["name"], "set_unit");
    check_call(call);
    // The tool definitions go into the system prompt; "none" leaves the prompt alone.
    const json tk = post(r, "/tokenize", {{"messages", msgs}, {"tools", tools}});
    const std::string text = post(r, "/detokenize", {{"tokens", tk["tokens"]}})["prompt"];
    EXPECT_NE(text.find("<｜begin▁of▁sentence｜>## Tools\nYou have access to the following tools:\n\n### set_unit\n"),
              std::string::npos) << text;
    const json plain = post(r, "/tokenize", {{"messages", msgs}});
    EXPECT_EQ(post(r, "/tokenize", {{"messages", msgs}, {"tools", tools}, {"tool_choice", "none"}})["tokens"], plain["tokens"]);
    EXPECT_EQ(post(r, "/v1/chat/completions", {{"messages", msgs}, {"tools", tools}, {"tool_choice", "maybe"}}, 400)
                  ["error"]["param"], "tool_choice");

    // FIM: BOS <｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>.
    const json fim = post(r, "/v1/completions", {{"prompt", "def add(a, b):\n"}, {"suffix", "\n    return c\n"},
                                                 {"max_tokens", 4}, {"temperature", 0}, {"return_token_ids", true}});
    const json want = post(r, "/tokenize", {{"prompt", "<｜fim▁begin｜>def add(a, b):\n<｜fim▁hole｜>\n    return c\n<｜fim▁end｜>"}});
    EXPECT_EQ(fim["choices"][0]["prompt_token_ids"], want["tokens"]);
    EXPECT_EQ(fim["usage"]["completion_tokens"], 4);
    EXPECT_EQ(post(r, "/v1/completions", {{"prompt", {1, 2}}, {"suffix", "x"}}, 400)["error"]["param"], "prompt");

    // Chat prefix completion: the prompt ends with the assistant's text, no end of sentence.
    json pmsgs = msgs;
    pmsgs.push_back({{"role", "assistant"}, {"content", "```python\n"}, {"prefix", true}});
    const json ptk = post(r, "/tokenize", {{"messages", pmsgs}});
    const std::string ptext = post(r, "/detokenize", {{"tokens", ptk["tokens"]}})["prompt"];
    EXPECT_EQ(ptext.substr(ptext.size() - std::string("Use celsius.<｜Assistant｜>```python\n").size()),
              "Use celsius.<｜Assistant｜>```python\n");
    const json pres = post(r, "/v1/chat/completions", {{"messages", pmsgs}, {"max_tokens", 3}, {"ignore_eos", true}});
    EXPECT_EQ(pres["usage"]["prompt_tokens"], ptk["count"]);
    // The prompt ids are the layout: the rendered messages with the generation prompt, then the
    // prefix's own tokens (no BOS, no end of sentence).
    {
      const json gen = post(r, "/tokenize", {{"messages", msgs}, {"add_generation_prompt", true}});
      const json pre = post(r, "/tokenize", {{"prompt", "```python\n"}, {"add_special_tokens", false}});
      json want_ids = gen["tokens"];
      for (const json& t : pre["tokens"]) want_ids.push_back(t);
      EXPECT_EQ(ptk["tokens"], want_ids);
      const json ids = post(r, "/v1/chat/completions", {{"messages", pmsgs}, {"max_tokens", 2}, {"ignore_eos", true},
                                                       {"return_token_ids", true}});
      EXPECT_EQ(ids["choices"][0]["prompt_token_ids"], want_ids);
    }
    // A tool-call text fed through prefix completion is parsed into exactly the call it encodes
    // (the constraint follows the prefix, so the model can only close the calls), streamed or not.
    {
      const std::string args = R"({"unit": "f"})";
      json cmsgs = msgs;
      cmsgs.push_back({{"role", "assistant"},
                       {"content", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>set_unit\n```json\n" + args +
                                       "\n```<｜tool▁call▁end｜>"},
                       {"prefix", true}});
      for (const char* choice : {"auto", "required"}) {
        json cb = {{"messages", cmsgs}, {"tools", tools}, {"tool_choice", choice}, {"parallel_tool_calls", false},
                   {"max_tokens", 40}, {"temperature", 1.0}, {"seed", 3}};
        const json cr = post(r, "/v1/chat/completions", cb);
        const json& ch = cr["choices"][0];
        EXPECT_EQ(ch["finish_reason"], "tool_calls") << choice << " " << ch.dump();
        EXPECT_TRUE(ch["message"]["content"].is_null()) << ch.dump();
        ASSERT_EQ(ch["message"]["tool_calls"].size(), 1u) << ch.dump();
        EXPECT_EQ(ch["message"]["tool_calls"][0]["function"]["name"], "set_unit");
        EXPECT_EQ(ch["message"]["tool_calls"][0]["function"]["arguments"], args);
        json scall;
        int ncalls = 0;
        std::string sfinish;
        for (const json& ev : post_stream(r, "/v1/chat/completions", cb))
          for (const json& c : ev["choices"]) {
            if (c["delta"].contains("tool_calls"))
              for (const json& d : c["delta"]["tool_calls"]) scall = d, ++ncalls;
            if (!c["finish_reason"].is_null()) sfinish = c["finish_reason"];
          }
        EXPECT_EQ(sfinish, "tool_calls");
        EXPECT_EQ(ncalls, 1);
        EXPECT_EQ(scall["function"]["name"], "set_unit");
        EXPECT_EQ(scall["function"]["arguments"], args);
      }
    }
    pmsgs[0]["prefix"] = true;
    EXPECT_EQ(post(r, "/v1/chat/completions", {{"messages", pmsgs}}, 400)["error"]["param"], "messages[0].prefix");

    // reasoning_content: a prompt that opens <think> makes the output reasoning until </think>.
    json tmsgs = msgs;
    tmsgs.push_back({{"role", "assistant"}, {"content", "<think>\n"}, {"prefix", true}});
    const json base = {{"messages", tmsgs}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}};
    const json th = post(r, "/v1/chat/completions", base);
    const json& m = th["choices"][0]["message"];
    EXPECT_EQ(m["content"], "");
    EXPECT_FALSE(m["reasoning_content"].get<std::string>().empty());
    std::string streamed;
    for (const json& ev : post_stream(r, "/v1/chat/completions", base))
      for (const json& ch : ev["choices"]) {
        if (ch["delta"].contains("reasoning_content")) streamed += ch["delta"]["reasoning_content"].get<std::string>();
        if (ch["delta"].contains("content")) {
          EXPECT_EQ(ch["delta"]["content"], "");
        }
      }
    EXPECT_EQ(streamed, m["reasoning_content"]);
  }
  fs::remove_all(dir);
}

// The disk tier of the context cache: blocks written by one server are hits for the next one
// (same model, same cache dir), give the same greedy text, and a corrupt file is a miss, deleted.
TEST(ServerDiskCache, PrefixesSurviveARestartAndCorruptionIsAMiss) {
  const fs::path cache = fs::temp_directory_path() / ("dsv3_disk_cache_" + std::to_string(getpid()));
  fs::remove_all(cache);
  const std::string model_dir = fixture("v3-fp8");
  const uint64_t id = server::model_identity(model_dir);
  json prompt = json::array();
  for (int i = 0; i < 200; ++i) prompt.push_back((i * 37 + 11) % 1000);
  const json body = {{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}};
  auto run = [&](uint64_t quota, json* res) {
    server::ServerOptions o;
    Running probe(model_dir, 1, o);  // only to learn the cache shape
    const int64_t layers = probe.model->cache().layers(), dim = probe.model->cache().dim();
    auto store = std::make_shared<server::DiskPrefixStore>(cache.string(), id, layers, dim, quota);
    {
      Running r(model_dir, 2, o, 0, store);
      *res = post(r, "/v1/completions", body);
    }
    store->flush();
    return store;
  };
  json first, second, third;
  auto s1 = run(1ull << 30, &first);
  EXPECT_EQ(first["usage"]["prompt_cache_hit_tokens"], 0);
  EXPECT_EQ(s1->files(), 3u);  // 208 tokens: 3 full blocks
  s1.reset();
  auto s2 = run(1ull << 30, &second);  // a new server: memory is empty, the disk is not
  EXPECT_EQ(second["usage"]["prompt_cache_hit_tokens"], 192);
  EXPECT_EQ(second["choices"][0]["text"], first["choices"][0]["text"]);
  s2.reset();
  // Flip one byte of every file: all are refused and deleted.
  for (const auto& e : fs::recursive_directory_iterator(cache))
    if (e.path().extension() == ".kv") {
      std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(200);
      f.put('\x7f');
    }
  auto s3 = run(1ull << 30, &third);
  EXPECT_EQ(third["usage"]["prompt_cache_hit_tokens"], 0);
  EXPECT_EQ(third["choices"][0]["text"], first["choices"][0]["text"]);
  EXPECT_EQ(s3->files(), 3u);  // rewritten after the run
  const uint64_t one = s3->bytes() / 3;
  s3.reset();
  // A quota of two blocks keeps the two most recently used.
  json fourth;
  auto s4 = run(2 * one, &fourth);
  EXPECT_LE(s4->bytes(), 2 * one);
  EXPECT_EQ(s4->files(), 2u);
  s4.reset();
  fs::remove_all(cache);
}

}  // namespace
