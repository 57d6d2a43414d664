// Function calling: tools/tool_choice parsing, the tool-call constraint over the real V3
// vocabulary (random logits, so every path of the syntax gets sampled) and the parser that turns
// the generated text into tool_calls, whole and split at every byte.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "runtime/sampler.h"
#include "server/api_error.h"
#include "server/reasoning.h"
#include "server/request.h"
#include "server/token_mask.h"
#include "server/tool_calls.h"
#include "tokenizer/tokenizer.h"

using namespace dsv3;
using namespace dsv3::server;
using ojson = nlohmann::ordered_json;

namespace {

struct Env {
  std::unique_ptr<Tokenizer> tok = Tokenizer::load(DSV3_TOKENIZER_DIR);
  std::shared_ptr<const VocabIndex> vocab = std::make_shared<const VocabIndex>(*tok);
  ModelInfo info() const {
    ModelInfo m;
    m.vocab_size = tok->vocab_limit();
    m.ctx = 4096;
    m.tok = tok.get();
    m.vocab = vocab;
    return m;
  }
};
const Env& env() {
  static Env e;
  return e;
}

const ojson kTools = ojson::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
      "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"], "additionalProperties": false}, "strict": true}},
  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
    "properties": {"zone": {"type": "integer"}}, "required": ["zone"], "additionalProperties": false}}}
])");

std::string param_of(const ojson& body) {
  try {
    parse_tools(body, env().info());
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    return e.param;
  }
  return "(accepted)";
}

TEST(ToolsParse, ChoicesAndErrorsNameTheField) {
  const ToolsRequest t = parse_tools({{"tools", kTools}}, env().info());
  EXPECT_EQ(t.choice, ToolsRequest::kAuto);
  EXPECT_EQ(t.tools.size(), 2u);
  EXPECT_EQ(parse_tools({{"tools", kTools}, {"tool_choice", "required"}}, env().info()).choice, ToolsRequest::kRequired);
  EXPECT_FALSE(parse_tools({{"tools", kTools}, {"tool_choice", "none"}}, env().info()).active());
  const ToolsRequest named = parse_tools(
      {{"tools", kTools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}}}, env().info());
  EXPECT_EQ(named.choice, ToolsRequest::kNamed);
  EXPECT_EQ(named.named, "get_time");
  EXPECT_EQ(param_of({{"tools", "x"}}), "tools");
  EXPECT_EQ(param_of({{"tools", {{{"type", "function"}, {"function", {{"name", "bad name"}}}}}}}), "tools[0].function.name");
  EXPECT_EQ(param_of({{"tools", kTools}, {"tool_choice", "always"}}), "tool_choice");
  EXPECT_EQ(param_of({{"tools", kTools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}}),
            "tool_choice");
  EXPECT_EQ(param_of({{"tool_choice", "required"}}), "tool_choice");
  EXPECT_EQ(param_of({{"tools", kTools}, {"parallel_tool_calls", 1}}), "parallel_tool_calls");
  ojson dup = kTools;
  dup[1]["function"]["name"] = "get_weather";
  EXPECT_EQ(param_of({{"tools", dup}}), "tools[1].function.name");
  // A schema keyword that cannot be enforced: refused for strict tools, "any object" otherwise.
  ojson pat = kTools;
  pat[0]["function"]["parameters"]["properties"]["city"]["pattern"] = "^[A-Z]";
  EXPECT_EQ(param_of({{"tools", pat}}), "tools[0].function.parameters.properties.city.pattern");
  pat[0]["function"]["strict"] = false;
  EXPECT_EQ(param_of({{"tools", pat}}), "(accepted)");
  // The prompt text names every tool with its schema and the exact call syntax.
  const std::string sys = tools_system_prompt(t);
  EXPECT_NE(sys.find("### get_weather\nDescription: Weather of a city\nParameters: {\"type\":\"object\""), std::string::npos);
  EXPECT_NE(sys.find("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>tool_call_name\n```json\n"),
            std::string::npos);
}

TEST(ToolCallParser, SplitsContentAndCallsAtAnyChunking) {
  const std::string text = std::string("Let me check. <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n") +
                           "```json\n{\"city\": \"Paris\", \"unit\": \"c\"}\n```<｜tool▁call▁end｜>\n" +
                           "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"zone\":1}\n```<｜tool▁call▁end｜>" +
                           "<｜tool▁calls▁end｜>";
  for (size_t chunk = 1; chunk <= text.size(); chunk = chunk < 8 ? chunk + 1 : chunk * 2) {
    ToolCallParser p;
    std::string content;
    for (size_t i = 0; i < text.size(); i += chunk) content += p.push(text.substr(i, chunk));
    content += p.flush();
    EXPECT_EQ(content, "Let me check. ") << chunk;
    ASSERT_EQ(p.calls().size(), 2u) << chunk;
    EXPECT_EQ(p.calls()[0].name, "get_weather");
    EXPECT_EQ(p.calls()[0].arguments, "{\"city\": \"Paris\", \"unit\": \"c\"}");
    EXPECT_EQ(p.calls()[1].name, "get_time");
    EXPECT_EQ(p.calls()[1].arguments, "{\"zone\":1}");
  }
  ToolCallParser plain;  // text that only looks like the start of the marker is not held forever
  std::string shown = plain.push("a <｜tool");
  EXPECT_EQ(shown, "a ");  // held back: it may be the marker arriving byte by byte
  shown += plain.flush();
  EXPECT_EQ(shown, "a <｜tool");
  EXPECT_TRUE(plain.calls().empty());
}

// Sampling as the engine does (mask, sample, accept) from random logits until EOS.
std::string generate(const ConstraintFactory& f, uint64_t seed, int32_t boost = -1) {
  const Tokenizer& tok = *env().tok;
  const int64_t V = tok.vocab_limit();
  auto c = f();
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = seed;
  sp.top_k = 64;  // keeps the sampler's sort small; the mask still decides what is possible
  Sampler sampler(sp);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> noise(0.0f, 2.0f);
  static std::vector<float> table;
  if (table.empty()) {
    table.resize(static_cast<size_t>(V) + 65536);
    for (auto& x : table) x = noise(rng);
  }
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int32_t> out;
  for (int step = 0; step < 800; ++step) {
    const size_t off = rng() % 65536;  // random logits without 129K draws a step
    std::copy(table.begin() + off, table.begin() + off + V, logits.begin());
    logits[static_cast<size_t>(tok.eos_id())] = 12.0f;
    // Structure tokens likely, so calls finish within the budget (strings end, calls close).
    for (const char* s : {"\"", "\",", "}", "c", "f", "1"})
      if (auto id = tok.token_id(s)) logits[static_cast<size_t>(*id)] = 10.0f;
    if (step == 0 && boost >= 0) logits[static_cast<size_t>(boost)] = 30.0f;
    c->mask(logits.data(), V, 800 - step);
    const int32_t t = sampler.sample(logits.data(), V, {}, out);
    EXPECT_TRUE(std::isfinite(logits[static_cast<size_t>(t)]));
    c->accept(t);
    if (t == tok.eos_id()) break;
    out.push_back(t);
  }
  return tok.decode(out, true);
}

void expect_valid_calls(const std::vector<ToolCall>& calls, const std::string& text) {
  for (const ToolCall& call : calls) {
    const auto a = nlohmann::json::parse(call.arguments, nullptr, false);
    ASSERT_FALSE(a.is_discarded()) << text;
    if (call.name == "get_weather") {
      EXPECT_TRUE(a.size() == 2 && a["city"].is_string() && (a["unit"] == "c" || a["unit"] == "f")) << text;
    } else {
      EXPECT_EQ(call.name, "get_time") << text;
      EXPECT_TRUE(a.size() == 1 && a["zone"].is_number_integer()) << text;
    }
  }
}

TEST(ToolCallConstraint, RequiredNamedAndSingleCallsFollowTheSyntaxAndSchemas) {
  const Env& e = env();
  int finished = 0;
  for (const char* mode : {"required", "named", "single"}) {
    ojson body = {{"tools", kTools}, {"tool_choice", "required"}};
    if (std::string(mode) == "named") body["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
    if (std::string(mode) == "single") body["parallel_tool_calls"] = false;
    const ToolsRequest t = parse_tools(body, e.info());
    const ConstraintFactory f = tool_call_constraint(t, *e.tok, e.vocab);
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      const std::string text = generate(f, seed);
      ASSERT_EQ(text.rfind("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>", 0), 0u) << text;
      ToolCallParser p;
      EXPECT_EQ(p.push(text), "");
      ASSERT_FALSE(p.calls().empty()) << text;
      expect_valid_calls(p.calls(), text);
      if (std::string(mode) == "named") {
        for (const auto& c : p.calls()) EXPECT_EQ(c.name, "get_weather");
      }
      if (std::string(mode) == "single") {
        EXPECT_EQ(p.calls().size(), 1u);
      }
      finished += text.size() >= std::string("<｜tool▁calls▁end｜>").size() &&
                  text.compare(text.size() - std::string("<｜tool▁calls▁end｜>").size(), std::string::npos,
                               "<｜tool▁calls▁end｜>") == 0;
    }
  }
  EXPECT_GE(finished, 10);  // nearly all close the calls and stop within the budget
}

TEST(ToolCallConstraint, AutoIsFreeUntilTheModelOpensACall) {
  const Env& e = env();
  const ToolsRequest t = parse_tools({{"tools", kTools}}, e.info());
  const ConstraintFactory f = tool_call_constraint(t, *e.tok, e.vocab);
  // Nothing is masked while the model writes text.
  auto c = f();
  std::vector<float> logits(static_cast<size_t>(e.tok->vocab_limit()), 0.5f);
  c->mask(logits.data(), static_cast<int64_t>(logits.size()), 100);
  for (float x : logits) ASSERT_EQ(x, 0.5f);
  // Once it opens the calls, the rest is forced.
  const std::string text = generate(f, 7, *e.tok->token_id("<｜tool▁calls▁begin｜>"));
  ToolCallParser p;
  p.push(text);
  ASSERT_FALSE(p.calls().empty()) << text;
  expect_valid_calls(p.calls(), text);
}

TEST(ReasoningParser, SplitsThinkBlocksAtAnyChunking) {
  struct Case {
    bool opened;
    std::string text, reasoning, content;
  };
  const std::vector<Case> cases = {
      {false, "<think>\nLet me see.</think>\n\nThe answer.", "\nLet me see.", "The answer."},
      {true, "Hmm, 2+2.\n</think>\n\n4", "Hmm, 2+2.\n", "4"},
      {false, "  <think>a</think>b", "a", "b"},
      {false, "No thinking <think>here</think>", "", "No thinking <think>here</think>"},
      {false, "<thi", "", "<thi"},
      {true, "still thinking </thi", "still thinking </thi", ""},
  };
  for (const Case& c : cases)
    for (size_t chunk = 1; chunk <= c.text.size(); ++chunk) {
      ReasoningParser p(c.opened);
      std::string r, t;
      for (size_t i = 0; i < c.text.size(); i += chunk) {
        auto o = p.push(c.text.substr(i, chunk));
        r += o.reasoning, t += o.content;
      }
      auto o = p.flush();
      r += o.reasoning, t += o.content;
      EXPECT_EQ(r, c.reasoning) << c.text << " chunk " << chunk;
      EXPECT_EQ(t, c.content) << c.text << " chunk " << chunk;
    }
  EXPECT_TRUE(prompt_opens_think("<｜Assistant｜><think>\n"));
  EXPECT_FALSE(prompt_opens_think("<｜Assistant｜>"));
}

}  // namespace
