// Constrained decoding: the JSON grammar automaton (server/json_grammar.h) byte by byte, schema
// compilation errors, the vocabulary masks (server/token_mask.h) against a brute-force walk of
// every token, and generation from random logits that must always end in JSON fitting the schema.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "runtime/sampler.h"
#include "server/api_error.h"
#include "server/json_grammar.h"
#include "server/token_mask.h"
#include "tokenizer/tokenizer.h"

using namespace dsv3;
using namespace dsv3::server;
using ojson = nlohmann::ordered_json;

namespace {

const ojson kPerson = ojson::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string"},
    "age": {"type": "integer"},
    "score": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "kind": {"enum": ["cat", "dog", 7, null]},
    "ok": {"type": "boolean"},
    "addr": {"type": "object", "properties": {"city": {"type": ["string", "null"]}}, "required": ["city"],
             "additionalProperties": false}
  },
  "required": ["name", "age", "kind"],
  "additionalProperties": false
})");

std::shared_ptr<const JsonGrammar> person() { return JsonGrammar::from_schema(kPerson, "schema"); }

// What the schema above means, checked on the parsed value independently of the automaton.
void expect_person(const nlohmann::json& v) {
  ASSERT_TRUE(v.is_object()) << v.dump();
  for (const char* k : {"name", "age", "kind"}) EXPECT_TRUE(v.contains(k)) << v.dump();
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const auto& x = it.value();
    if (k == "name") EXPECT_TRUE(x.is_string());
    else if (k == "age") EXPECT_TRUE(x.is_number_integer() || (x.is_number_float() && x == std::floor(x.get<double>()))) << x;
    else if (k == "score") EXPECT_TRUE(x.is_number());
    else if (k == "tags") {
      EXPECT_TRUE(x.is_array() && x.size() <= 3);
      for (const auto& t : x) EXPECT_TRUE(t.is_string());
    } else if (k == "kind") EXPECT_TRUE(x == "cat" || x == "dog" || x == 7 || x.is_null()) << x.dump();
    else if (k == "ok") EXPECT_TRUE(x.is_boolean());
    else if (k == "addr") {
      EXPECT_TRUE(x.is_object() && x.size() == 1 && x.contains("city")) << x.dump();
      if (x.contains("city")) {
        EXPECT_TRUE(x["city"].is_string() || x["city"].is_null());
      }
    } else ADD_FAILURE() << "unexpected key " << k;
  }
}

const Tokenizer& real_tokenizer() {
  static std::unique_ptr<Tokenizer> t = Tokenizer::load(DSV3_TOKENIZER_DIR);
  return *t;
}
const std::shared_ptr<const VocabIndex>& real_vocab() {
  static auto v = std::make_shared<const VocabIndex>(real_tokenizer());
  return v;
}

TEST(JsonGrammar, AnyObjectAcceptsJsonObjectsOnly) {
  const auto g = JsonGrammar::any_object();
  for (const char* ok : {"{}", "{\"a\":1}", " {\"a\": [1, 2.5e-3, -0, true, false, null, \"x\\n\\u00e9\"], \"b\": {}}",
                         "{\"k\":\"日本\"}", "{\"a\":{\"b\":{\"c\":[[]]}}}", "{\"\":-1.0E+2}"})
    EXPECT_TRUE(json_grammar_accepts(*g, ok)) << ok;
  for (const char* bad : {"", "[]", "1", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":01}", "{\"a\":1.}",
                          "{\"a\":tru}", "{\"a\":\"\\x\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\x01\"}", "{} ",
                          "{\"a\":1}}", "{\"a\":-}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":1e}"})
    EXPECT_FALSE(json_grammar_accepts(*g, bad)) << bad;
  // Whitespace runs are bounded, so are numbers.
  EXPECT_TRUE(json_grammar_accepts(*g, "{" + std::string(32, ' ') + "}"));
  EXPECT_FALSE(json_grammar_accepts(*g, "{" + std::string(33, ' ') + "}"));
  EXPECT_FALSE(json_grammar_accepts(*g, "{\"a\":" + std::string(40, '1') + "}"));
  EXPECT_TRUE(json_grammar_accepts(*g, "{\"a\":1e-99}"));
  EXPECT_FALSE(json_grammar_accepts(*g, "{\"a\":1e999}"));  // would overflow a double
}

TEST(JsonGrammar, SchemaTypesPropertiesRequiredEnum) {
  const auto g = person();
  for (const char* ok : {R"({"name":"a","age":3,"kind":"cat"})",
                         R"({"kind":null,"age":-12,"name":"","tags":[],"ok":true,"score":1.5})",
                         R"({"name":"a","age":0,"kind":7,"addr":{"city":null},"tags":["x","y","z"]})",
                         "{\n  \"name\": \"b\",\n  \"age\": 1,\n  \"kind\": \"dog\"\n}"})
    EXPECT_TRUE(json_grammar_accepts(*g, ok)) << ok;
  for (const char* bad : {R"({"name":"a","age":3})",                         // kind missing
                          R"({"name":"a","age":3.5,"kind":"cat"})",          // integer
                          R"({"name":"a","age":3,"kind":"cow"})",            // enum
                          R"({"name":"a","age":3,"kind":"cat","x":1})",      // additionalProperties
                          R"({"name":"a","name":"b","age":3,"kind":"cat"})", // a key twice
                          R"({"name":1,"age":3,"kind":"cat"})",
                          R"({"name":"a","age":3,"kind":7,"tags":["a","b","c","d"]})",  // maxItems
                          R"({"name":"a","age":3,"kind":7,"addr":{}})",      // nested required
                          R"({"name":"a","age":3,"kind":7,"ok":null})"})
    EXPECT_FALSE(json_grammar_accepts(*g, bad)) << bad;
  // Additional properties allowed by default, typed by a schema when given.
  const auto open = JsonGrammar::from_schema(ojson::parse(R"({"properties":{"a":{"type":"integer"}},
      "additionalProperties":{"type":"string"},"required":["a"]})"), "s");
  EXPECT_TRUE(json_grammar_accepts(*open, R"({"b":"x","a":1,"ab":"y"})"));
  EXPECT_FALSE(json_grammar_accepts(*open, R"({"a":1,"b":2})"));
  EXPECT_FALSE(json_grammar_accepts(*open, R"({"a":1,"a":2})"));
  // Root arrays, minItems, const, integer-only numbers, a root number that may end anywhere.
  const auto arr = JsonGrammar::from_schema(ojson::parse(R"({"type":"array","items":{"const":"x"},"minItems":2})"), "s");
  EXPECT_TRUE(json_grammar_accepts(*arr, R"(["x","x","x"])"));
  EXPECT_FALSE(json_grammar_accepts(*arr, R"(["x"])"));
  EXPECT_FALSE(json_grammar_accepts(*arr, R"(["x","y"])"));
  const auto num = JsonGrammar::from_schema(ojson::parse(R"({"type":"integer"})"), "s");
  EXPECT_TRUE(json_grammar_accepts(*num, "-120"));
  EXPECT_FALSE(json_grammar_accepts(*num, "1.0"));
  EXPECT_FALSE(json_grammar_accepts(*num, "1e3"));
}

TEST(JsonGrammar, UnsupportedSchemasAre400sNamingTheKeyword) {
  auto expect_error = [](const char* schema, const std::string& param) {
    try {
      JsonGrammar::from_schema(ojson::parse(schema), "response_format.json_schema.schema");
      ADD_FAILURE() << "accepted " << schema;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
      EXPECT_EQ(e.param, "response_format.json_schema.schema" + param) << e.what();
    }
  };
  expect_error(R"({"type":"string","pattern":"a+"})", ".pattern");
  expect_error(R"({"type":"object","properties":{"a":{"type":"strin"}}})", ".properties.a.type");
  expect_error(R"({"properties":{"a":{}},"required":["b"]})", ".required");
  expect_error(R"({"type":"array","items":{"anyOf":[]}})", ".items.anyOf");
  expect_error(R"({"enum":[]})", ".enum");
  expect_error(R"({"type":"array","minItems":3,"maxItems":2})", ".minItems");
  expect_error(R"(5)", "");
  expect_error(R"({"properties":{"a":false}})", ".properties.a");
}

// Random walks over bytes: from every reachable state some byte goes on or the value is complete
// (no dead ends), and what comes out parses as JSON that fits the schema.
TEST(JsonGrammar, RandomByteWalksAlwaysEndInValidJson) {
  const auto g = person();
  std::mt19937 rng(5);
  for (int run = 0; run < 300; ++run) {
    JsonGrammarState st(*g);
    std::string text;
    for (int step = 0; step < 4000 && !(st.complete() && (step > 200 || rng() % 4 == 0)); ++step) {
      std::vector<uint8_t> ok;
      for (int c = 0; c < 256; ++c) {
        JsonGrammarState t;
        t.copy_from(st);
        if (t.advance(static_cast<uint8_t>(c))) ok.push_back(static_cast<uint8_t>(c));
      }
      if (ok.empty()) break;
      // Prefer structure over long strings/whitespace after a while, so walks finish.
      uint8_t c = ok[rng() % ok.size()];
      if (step > 60)
        for (uint8_t x : ok)
          if (std::string("}]\",:0").find(static_cast<char>(x)) != std::string::npos && rng() % 2) c = x;
      ASSERT_TRUE(st.advance(c));
      text += static_cast<char>(c);
    }
    ASSERT_TRUE(st.complete()) << text;
    expect_person(nlohmann::json::parse(text));
  }
}

// Shortest completion by breadth-first search over printable bytes (states deduplicated by
// key): the independent answer min_close() must give.
int shortest_completion(const JsonGrammarState& from) {
  std::vector<JsonGrammarState> level(1);
  level[0].copy_from(from);
  std::set<std::string> seen{std::string(from.key())};
  for (int d = 0; d <= 64; ++d) {
    std::vector<JsonGrammarState> next;
    for (const JsonGrammarState& st : level) {
      if (st.complete()) return d;
      for (int c = 0x21; c < 0xC0; ++c) {  // no whitespace (it never shortens a completion); 0x80-0xBF
        if (c == 0x7f) continue;           // finish UTF-8 sequences
        JsonGrammarState t;
        t.copy_from(st);
        if (!t.advance(static_cast<uint8_t>(c)) || !seen.insert(std::string(t.key())).second) continue;
        next.emplace_back();
        next.back().copy_from(t);
      }
    }
    if (seen.size() > 2000000) return -2;  // the test's prefixes stay far below this
    level = std::move(next);
  }
  return -1;
}

TEST(JsonGrammar, MinCloseIsTheShortestCompletion) {
  const ojson nested = ojson::parse(R"({"type": "object", "properties": {
      "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"enum": ["abc", "de"]}},
                                           "required": ["k"], "additionalProperties": false}, "minItems": 2},
      "opt": {"type": "object", "properties": {"deep": {"type": "integer"}}, "required": ["deep"],
              "additionalProperties": false},
      "s": {"type": "string"}},
    "required": ["list"], "additionalProperties": false})");
  const auto any = JsonGrammar::any_object(), pers = person(), nest = JsonGrammar::from_schema(nested, "schema");
  const std::pair<const JsonGrammar*, std::vector<std::string>> cases[] = {
      {any.get(), {"", "{", "{\"", "{\"a", "{\"a\"", "{\"a\":", "{\"a\":[", "{\"a\":[{\"b\":\"x\\", "{\"a\":\"\\u0",
                   "{\"a\":-", "{\"a\":1.", "{\"a\":1e+", "{\"a\":tr", "{\"a\":1,", "{\"a\":[1,", "{\"a\":\"\xe6\x97"}},
      {pers.get(), {"{\"name\":\"x\",\"age\":1,\"k", "{\"name\":\"x\",\"age\":1",
                    "{\"kind\":\"c", "{\"tags\":[\"a\",", "{\"addr\":{", "{\"addr\":{\"city\":n",
                    "{\"name\":\"\",\"age\":0,\"kind\":7,"}},
      {nest.get(), {"{\"list\":[{\"k\":\"de\"},{", "{\"list\":[{", "{\"list\":[{\"k\":\"d", "{\"list\":[{\"k\":\"de\"},",
                    "{\"list\":[{\"k\":\"de\"},{\"k\":\"abc\"}", "{\"list\":[{\"k\":\"de\"},{\"k\":\"de\"}],\"o", "{\"list\":[{\"k\":\"de\"},{\"k\":\"de\"}],\"opt\":{"}},
  };
  for (const auto& [g, prefixes] : cases)
    for (const std::string& prefix : prefixes) {
      JsonGrammarState st(*g);
      ASSERT_TRUE(st.advance(prefix)) << prefix;
      EXPECT_EQ(st.min_close(), shortest_completion(st)) << "after '" << prefix << "'";
    }
}

TEST(TokenMask, MatchesABruteForceWalkOfEveryToken) {
  const VocabIndex& v = *real_vocab();
  const Tokenizer& tok = real_tokenizer();
  EXPECT_FALSE(v.is_text(tok.eos_id()));
  EXPECT_FALSE(v.is_text(*tok.token_id("<｜User｜>")));
  EXPECT_FALSE(v.is_text(*tok.token_id("<｜tool▁sep｜>")));
  EXPECT_TRUE(v.is_text(*tok.token_id("<")));
  const auto g = person();
  for (const std::string prefix : {"", "{", "{\"na", "{\"name\":\"x", "{\"name\":\"x\",\"age\":1", "{\"name\":\"\\u00",
                                   "{\"kind\":\"c", "{\"tags\":[\"a\",", "{\"name\":\"\xe6\x97"}) {
    JsonGrammarState st(*g);
    ASSERT_TRUE(st.advance(prefix)) << prefix;
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<uint64_t> m = v.allowed(st);
    std::printf("[ mask ] uncached, after '%s': %.2f ms\n", prefix.c_str(),
                1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    int64_t n_allowed = 0;
    for (int32_t id = 0; id < v.vocab(); ++id) {
      JsonGrammarState t;
      t.copy_from(st);
      const bool want = v.is_text(id) && t.advance(v.bytes(id));
      const bool got = m[static_cast<size_t>(id) / 64] >> (id % 64) & 1;
      ASSERT_EQ(got, want) << "prefix " << prefix << " token " << id << " '" << v.bytes(id) << "'";
      n_allowed += got;
    }
    EXPECT_GT(n_allowed, 0) << prefix;
  }
}

// Generation as the engine does it: mask, sample, accept. Random logits favour every token in
// turn, so this explores far more of the grammar than a model would; it must still end in JSON
// that fits the schema, and the mask cost per token is reported.
TEST(TokenMask, SamplingFromMaskedRandomLogitsGivesSchemaValidJson) {
  const Tokenizer& tok = real_tokenizer();
  const int64_t V = tok.vocab_limit();
  auto factory = json_constraint(person(), real_vocab());
  std::mt19937 rng(11);
  std::normal_distribution<float> noise(0.0f, 2.0f);
  std::vector<float> table(static_cast<size_t>(V) + 65536), logits(static_cast<size_t>(V));
  for (auto& x : table) x = noise(rng);
  double mask_s = 0;
  int64_t tokens = 0;
  for (int run = 0; run < 6; ++run) {
    const int budget = run < 3 ? 600 : 24 + 12 * run;  // the last runs must close in time
    auto c = factory();
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.top_k = 64;  // keeps the sampler's sort small; the mask still decides what is possible
    sp.seed = static_cast<uint64_t>(run);
    Sampler sampler(sp);
    std::vector<int32_t> out;
    for (int step = 0; step < budget; ++step) {
      const size_t off = rng() % 65536;  // fresh-enough random logits without 129K draws a step
      std::copy(table.begin() + off, table.begin() + off + V, logits.begin());
      logits[static_cast<size_t>(tok.eos_id())] = 8.0f;  // a model that wants to stop
      const auto t0 = std::chrono::steady_clock::now();
      c->mask(logits.data(), V, budget - step);
      mask_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++tokens;
      const int32_t t = sampler.sample(logits.data(), V, {}, out);
      ASSERT_TRUE(std::isfinite(logits[static_cast<size_t>(t)]));
      c->accept(t);
      if (t == tok.eos_id()) break;
      out.push_back(t);
    }
    ASSERT_FALSE(out.empty());
    const std::string text = tok.decode(out);
    auto parsed = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << "budget " << budget << ": " << text;
    expect_person(parsed);
  }
  std::printf("[ mask ] %.3f ms per token over %lld tokens (129K vocabulary, cache by state)\n",
              1e3 * mask_s / static_cast<double>(tokens), static_cast<long long>(tokens));
}

// json_object from logits that never favour ending (EOS and structure tokens get no boost):
// every budget from 2 tokens up must still give one complete JSON object.
TEST(TokenMask, JsonObjectClosesWithinEveryTokenBudget) {
  const Tokenizer& tok = real_tokenizer();
  const int64_t V = tok.vocab_limit();
  auto factory = json_constraint(JsonGrammar::any_object(), real_vocab());
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.0f, 2.0f);
  std::vector<float> table(static_cast<size_t>(V) + 65536), logits(static_cast<size_t>(V));
  for (auto& x : table) x = noise(rng);
  for (int budget : {2, 3, 5, 8, 13, 21, 34, 55, 89}) {
    for (int run = 0; run < 3; ++run) {
      auto c = factory();
      SamplingParams sp;
      sp.temperature = run == 0 ? 0.0f : 1.0f;
      sp.seed = static_cast<uint64_t>(run);
      Sampler sampler(sp);
      std::vector<int32_t> out;
      for (int step = 0; step < budget; ++step) {
        const size_t off = rng() % 65536;
        std::copy(table.begin() + off, table.begin() + off + V, logits.begin());
        logits[static_cast<size_t>(tok.eos_id())] = -20.0f;
        c->mask(logits.data(), V, budget - step);
        const int32_t t = sampler.sample(logits.data(), V, {}, out);
        ASSERT_TRUE(std::isfinite(logits[static_cast<size_t>(t)]));
        c->accept(t);
        if (t == tok.eos_id()) break;
        out.push_back(t);
      }
      const std::string text = tok.decode(out);
      const auto parsed = nlohmann::json::parse(text, nullptr, false);
      ASSERT_TRUE(parsed.is_object()) << "budget " << budget << " run " << run << ": " << text;
    }
  }
}

}  // namespace
