#include "server/request.h"

#include <cmath>
#include <set>

#include "chat/chat_template.h"
#include "core/error.h"
#include "server/json_grammar.h"
#include "server/reasoning.h"
#include "server/token_mask.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3::server {

using ojson = nlohmann::ordered_json;

namespace {

constexpr int kMaxDepth = 64;        // nesting deeper than any real request
constexpr size_t kMaxStops = 16;
constexpr size_t kMaxPrompts = 64;

const char* type_name(const ojson& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

// present and not null
bool has(const ojson& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && !it->is_null();
}

bool get_bool(const ojson& j, const char* key, bool def) {
  if (!has(j, key)) return def;
  const ojson& v = j.at(key);
  if (!v.is_boolean()) bad_request(key, fmt::format("'{}' must be a boolean, not {}", key, type_name(v)), "invalid_type");
  return v.get<bool>();
}

int64_t get_int(const ojson& j, const char* key, int64_t lo, int64_t hi, int64_t def) {
  if (!has(j, key)) return def;
  const ojson& v = j.at(key);
  int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      bad_request(key, fmt::format("'{}' is out of range", key));
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>() &&
             std::fabs(v.get<double>()) < 9e15) {
    x = static_cast<int64_t>(v.get<double>());  // 16.0 is an integer in JSON's eyes
  } else {
    bad_request(key, fmt::format("'{}' must be an integer, not {}", key, type_name(v)), "invalid_type");
  }
  if (x < lo || x > hi) bad_request(key, fmt::format("'{}' must be between {} and {} (got {})", key, lo, hi, x));
  return x;
}

double get_number(const ojson& j, const char* key, double lo, double hi, double def) {
  if (!has(j, key)) return def;
  const ojson& v = j.at(key);
  if (!v.is_number()) bad_request(key, fmt::format("'{}' must be a number, not {}", key, type_name(v)), "invalid_type");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad_request(key, fmt::format("'{}' must be between {} and {} (got {})", key, lo, hi, v.dump()));
  return x;
}

void check_fields(const ojson& j, const std::set<std::string>& known) {
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()))
      bad_request(it.key(), fmt::format("Unrecognized request argument supplied: {}", it.key()), "unknown_parameter");
}

std::vector<int32_t> token_array(const ojson& v, const char* param, const ModelInfo& m) {
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const auto& t : v) {
    if (!t.is_number_integer()) bad_request(param, fmt::format("'{}' token ids must be integers, not {}", param, type_name(t)), "invalid_type");
    const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? -1 : t.get<int64_t>();
    if (id < 0 || id >= m.vocab_size)
      bad_request(param, fmt::format("token id {} is outside the vocabulary (0..{})", t.dump(), m.vocab_size - 1),
                  "invalid_token_id");
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

const Tokenizer& need_tokenizer(const ModelInfo& m, const char* param) {
  if (!m.tok) bad_request(param, "this model directory has no tokenizer.json: send token ids instead of text", "no_tokenizer");
  return *m.tok;
}

std::vector<int32_t> encode_text(const ModelInfo& m, const std::string& text, bool add_bos, const char* param) {
  const Tokenizer& tok = need_tokenizer(m, param);
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(m.bos_id);
  // JSON strings are valid UTF-8 already; the sanitiser only guards against lone surrogates.
  tok.encode_into(utf8_sanitize(text), ids, true);
  return ids;
}

// Fill in the middle (spec section 11): [BOS] <｜fim▁begin｜>PREFIX<｜fim▁hole｜>SUFFIX<｜fim▁end｜>; the
// model writes the middle. Prefix and suffix are encoded as text: a special token spelled inside
// them stays text.
std::vector<int32_t> fim_prompt(const ModelInfo& m, const std::string& prefix, const std::string& suffix, bool add_bos) {
  const Tokenizer& tok = need_tokenizer(m, "suffix");
  int32_t ids[3];
  const char* names[3] = {"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"};
  for (int i = 0; i < 3; ++i) {
    const auto id = tok.token_id(names[i]);
    if (!id) bad_request("suffix", fmt::format("this model's tokenizer has no {} token: fill in the middle is not available", names[i]),
                         "no_fim_tokens");
    ids[i] = *id;
  }
  std::vector<int32_t> out;
  if (add_bos) out.push_back(m.bos_id);
  out.push_back(ids[0]);
  tok.encode_into(utf8_sanitize(prefix), out, false);
  out.push_back(ids[1]);
  tok.encode_into(utf8_sanitize(suffix), out, false);
  out.push_back(ids[2]);
  return out;
}

void check_prompt_length(size_t n, int64_t max_tokens, const ModelInfo& m, const char* param) {
  if (n == 0) bad_request(param, "the prompt is empty");
  const int64_t len = static_cast<int64_t>(n);
  if (len > m.ctx || (len == m.ctx && max_tokens > 0))
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens; the prompt has {} tokens{}", m.ctx,
                               len, len == m.ctx ? " and leaves no room to generate" : ""),
                   "invalid_request_error", param, "context_length_exceeded");
}

// Fields both endpoints share; `max_tokens_default` differs (OpenAI: 16 for completions,
// the rest of the context for chat).
CommonRequest parse_common(const ojson& j, const ModelInfo& m, int64_t max_tokens_default, int64_t max_tokens_min) {
  CommonRequest c;
  GenerateOptions& g = c.gen;
  if (has(j, "model") && !j.at("model").is_string()) bad_request("model", "'model' must be a string", "invalid_type");
  const char* mt_key = has(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  g.max_tokens = get_int(j, mt_key, max_tokens_min, m.ctx, max_tokens_default);
  SamplingParams& s = g.sampling;
  s.temperature = static_cast<float>(get_number(j, "temperature", 0.0, 2.0, 1.0));
  s.top_p = static_cast<float>(get_number(j, "top_p", 0.0, 1.0, 1.0));
  if (s.top_p <= 0.0f) bad_request("top_p", "'top_p' must be greater than 0");
  s.top_k = static_cast<int>(get_int(j, "top_k", -1, 1 << 20, 0));
  if (s.top_k < 0) s.top_k = 0;  // vLLM's "-1 = off"
  s.min_p = static_cast<float>(get_number(j, "min_p", 0.0, 1.0, 0.0));
  s.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", -2.0, 2.0, 0.0));
  s.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", -2.0, 2.0, 0.0));
  s.repetition_penalty = static_cast<float>(get_number(j, "repetition_penalty", 0.01, 100.0, 1.0));
  if (has(j, "seed")) s.seed = static_cast<uint64_t>(get_int(j, "seed", INT64_MIN, INT64_MAX, 0));
  else s.seed = std::random_device{}();
  c.n = static_cast<int>(get_int(j, "n", 1, m.max_n, 1));
  if (has(j, "best_of") && get_int(j, "best_of", 1, m.max_n, 1) != c.n)
    bad_request("best_of", "'best_of' different from 'n' is not supported");
  c.stream = get_bool(j, "stream", false);
  if (has(j, "stream_options")) {
    const ojson& so = j.at("stream_options");
    if (!so.is_object()) bad_request("stream_options", "'stream_options' must be an object", "invalid_type");
    if (!c.stream) bad_request("stream_options", "'stream_options' is only allowed when 'stream' is true");
    check_fields(so, {"include_usage", "continuous_usage_stats"});
    c.include_usage = get_bool(so, "include_usage", false);
    c.continuous_usage = get_bool(so, "continuous_usage_stats", false);
  }
  if (has(j, "stop")) {
    const ojson& st = j.at("stop");
    if (st.is_string()) {
      c.stop.push_back(st.get<std::string>());
    } else if (st.is_array()) {
      if (st.size() > kMaxStops) bad_request("stop", fmt::format("at most {} stop sequences", kMaxStops));
      for (const auto& x : st) {
        if (!x.is_string()) bad_request("stop", "'stop' must be a string or an array of strings", "invalid_type");
        c.stop.push_back(x.get<std::string>());
      }
    } else {
      bad_request("stop", "'stop' must be a string or an array of strings", "invalid_type");
    }
    for (const auto& x : c.stop)
      if (x.empty()) bad_request("stop", "stop sequences must not be empty");
    if (!c.stop.empty()) need_tokenizer(m, "stop");
  }
  if (has(j, "stop_token_ids")) {
    const ojson& st = j.at("stop_token_ids");
    if (!st.is_array()) bad_request("stop_token_ids", "'stop_token_ids' must be an array of token ids", "invalid_type");
    g.stop_ids = token_array(st, "stop_token_ids", m);
  }
  g.ignore_eos = get_bool(j, "ignore_eos", false);
  c.tokens_as_ids = get_bool(j, "return_tokens_as_token_ids", m.tok == nullptr);
  c.return_token_ids = get_bool(j, "return_token_ids", m.tok == nullptr);
  if (has(j, "logit_bias")) {
    const ojson& lb = j.at("logit_bias");
    if (!lb.is_object()) bad_request("logit_bias", "'logit_bias' must be an object", "invalid_type");
    if (!lb.empty()) bad_request("logit_bias", "'logit_bias' is not supported");
  }
  if (has(j, "speculative")) {
    const ojson& sp = j.at("speculative");
    if (!sp.is_boolean()) bad_request("speculative", "'speculative' must be a boolean", "invalid_type");
    g.speculative = sp.get<bool>();
  } else {
    g.speculative = m.speculative;
  }
  if (g.speculative && !m.has_mtp) bad_request("speculative", "this checkpoint has no MTP module");
  if (has(j, "response_format")) g.constraint = parse_response_format(j.at("response_format"), m);
  try {
    s.validate();
  } catch (const Error& e) {
    bad_request("temperature", e.what());
  }
  return c;
}

const std::set<std::string> kCommonFields = {
    "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
    "repetition_penalty", "seed", "n", "best_of", "stream", "stream_options", "stop", "stop_token_ids", "ignore_eos",
    "return_tokens_as_token_ids", "return_token_ids", "logit_bias", "user", "speculative", "logprobs",
    "metadata", "store", "service_tier", "response_format"};

}  // namespace

ConstraintFactory parse_response_format(const ojson& rf, const ModelInfo& m) {
  if (!rf.is_object()) bad_request("response_format", "'response_format' must be an object", "invalid_type");
  check_fields(rf, {"type", "json_schema"});
  const std::string type = has(rf, "type") && rf.at("type").is_string() ? rf.at("type").get<std::string>() : "";
  if (type != "text" && type != "json_object" && type != "json_schema")
    bad_request("response_format.type", "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"");
  if (type != "json_schema" && has(rf, "json_schema"))
    bad_request("response_format.json_schema", "'json_schema' goes with \"type\": \"json_schema\"");
  if (type == "text") return {};
  need_tokenizer(m, "response_format");
  if (!m.vocab) bad_request("response_format", "constrained decoding needs the tokenizer's vocabulary", "no_tokenizer");
  if (type == "json_object") return json_constraint(JsonGrammar::any_object(), m.vocab);
  if (!has(rf, "json_schema") || !rf.at("json_schema").is_object())
    bad_request("response_format.json_schema", "'response_format.json_schema' must be an object with a 'schema'",
                "missing_required_parameter");
  const ojson& js = rf.at("json_schema");
  for (auto it = js.begin(); it != js.end(); ++it)
    if (it.key() != "name" && it.key() != "description" && it.key() != "schema" && it.key() != "strict")
      bad_request("response_format.json_schema." + it.key(),
                  fmt::format("unknown field '{}' in 'response_format.json_schema'", it.key()), "unknown_parameter");
  if (has(js, "name") && !js.at("name").is_string())
    bad_request("response_format.json_schema.name", "'name' must be a string", "invalid_type");
  get_bool(js, "strict", false);  // strict or not, the schema is always enforced
  if (!has(js, "schema"))
    bad_request("response_format.json_schema.schema", "'response_format.json_schema.schema' is required",
                "missing_required_parameter");
  return json_constraint(JsonGrammar::from_schema(js.at("schema"), "response_format.json_schema.schema"), m.vocab);
}

ojson parse_body(const std::string& body) {
  ojson j;
  try {
    // The callback bounds the nesting, so later recursive walks cannot overflow the stack.
    j = ojson::parse(body, [](int depth, ojson::parse_event_t, ojson&) {
      if (depth > kMaxDepth) throw ApiError(400, "JSON nesting is too deep", "invalid_request_error", "", "invalid_json");
      return true;
    });
  } catch (const ApiError&) {
    throw;
  } catch (const std::exception& e) {
    throw ApiError(400, fmt::format("We could not parse the JSON body of your request: {}", e.what()),
                   "invalid_request_error", "", "invalid_json");
  }
  if (!j.is_object())
    throw ApiError(400, fmt::format("the request body must be a JSON object, not {}", type_name(j)),
                   "invalid_request_error", "", "invalid_json");
  return j;
}

CompletionRequest parse_completion(const ojson& j, const ModelInfo& m) {
  std::set<std::string> known = kCommonFields;
  known.insert({"prompt", "echo", "suffix", "add_special_tokens"});
  check_fields(j, known);
  CompletionRequest r;
  r.c = parse_common(j, m, 16, 0);
  r.echo = get_bool(j, "echo", false);
  r.logprobs = has(j, "logprobs") ? static_cast<int>(get_int(j, "logprobs", 0, 20, -1)) : -1;
  const bool add_bos = get_bool(j, "add_special_tokens", true);
  if (!has(j, "prompt")) bad_request("prompt", "'prompt' is required", "missing_required_parameter");
  const ojson& p = j.at("prompt");
  if (has(j, "suffix")) {
    if (!j.at("suffix").is_string()) bad_request("suffix", "'suffix' must be a string", "invalid_type");
    if (!p.is_string()) bad_request("prompt", "with 'suffix' (fill in the middle) 'prompt' must be a string");
    if (r.echo) bad_request("echo", "'echo' cannot be combined with 'suffix'");
    r.prompts.push_back(fim_prompt(m, p.get<std::string>(), j.at("suffix").get<std::string>(), add_bos));
  } else if (p.is_string()) {
    r.prompts.push_back(encode_text(m, p.get<std::string>(), add_bos, "prompt"));
  } else if (p.is_array() && !p.empty() && p.front().is_number()) {
    r.prompts.push_back(token_array(p, "prompt", m));
  } else if (p.is_array() && !p.empty()) {
    if (p.size() > kMaxPrompts) bad_request("prompt", fmt::format("at most {} prompts per request", kMaxPrompts));
    for (const auto& x : p) {
      if (x.is_string()) r.prompts.push_back(encode_text(m, x.get<std::string>(), add_bos, "prompt"));
      else if (x.is_array()) r.prompts.push_back(token_array(x, "prompt", m));
      else bad_request("prompt", "'prompt' must be a string, an array of token ids, or an array of those", "invalid_type");
    }
  } else {
    bad_request("prompt", p.is_array() ? "'prompt' is empty"
                                       : "'prompt' must be a string, an array of token ids, or an array of those",
                p.is_array() ? "invalid_value" : "invalid_type");
  }
  if (r.prompts.size() * static_cast<size_t>(r.c.n) > kMaxPrompts)
    bad_request("n", fmt::format("at most {} choices per request", kMaxPrompts));
  for (const auto& pr : r.prompts) check_prompt_length(pr.size(), r.c.gen.max_tokens, m, "prompt");
  if (r.c.gen.max_tokens == 0 && !r.echo)
    bad_request("max_tokens", "'max_tokens' must be at least 1 unless 'echo' is set");
  if (r.c.stream && r.echo && r.logprobs >= 0)
    bad_request("echo", "'echo' with 'logprobs' is not supported when streaming; use a non-streaming request");
  r.c.gen.logprobs = r.logprobs;
  r.c.gen.prompt_logprobs = r.echo && r.logprobs >= 0;
  return r;
}

std::vector<int32_t> chat_prompt(const ojson& messages, bool add_generation_prompt, const ojson& tools,
                                 const std::string& system_extra, const ModelInfo& m, std::string* prefix_out) {
  if (!messages.is_array()) bad_request("messages", "'messages' must be an array", "invalid_type");
  if (messages.empty()) bad_request("messages", "'messages' must not be empty");
  static const std::set<std::string> roles = {"system", "developer", "user", "assistant", "tool"};
  ojson norm = ojson::array();
  bool is_prefix = false;  // the last message is {"role": "assistant", "prefix": true}
  for (size_t i = 0; i < messages.size(); ++i) {
    const ojson& msg = messages[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!msg.is_object()) bad_request(param, fmt::format("'{}' must be an object", param), "invalid_type");
    if (!msg.contains("role") || !msg.at("role").is_string())
      bad_request(param + ".role", fmt::format("'{}.role' must be a string", param), "invalid_type");
    std::string role = msg.at("role").get<std::string>();
    if (!roles.count(role)) bad_request(param + ".role", fmt::format("unknown role '{}'", role));
    ojson out = msg;
    if (role == "developer") out["role"] = role = "system";  // OpenAI's newer name for system
    const bool has_calls = msg.contains("tool_calls") && !msg.at("tool_calls").is_null();
    if (has_calls) {
      const ojson& tc = msg.at("tool_calls");
      if (role != "assistant" || !tc.is_array() || tc.empty())
        bad_request(param + ".tool_calls", "'tool_calls' must be a non-empty array on an assistant message");
      for (auto call : tc) {
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object() ||
            !call["function"].contains("name") || !call["function"]["name"].is_string())
          bad_request(param + ".tool_calls", "each tool call needs function.name", "invalid_type");
        const ojson& args = call["function"].value("arguments", ojson("{}"));
        if (!args.is_string()) bad_request(param + ".tool_calls", "function.arguments must be a JSON string", "invalid_type");
      }
      ojson fixed = ojson::array();
      for (auto call : tc) {
        if (!call.contains("type")) call["type"] = "function";
        if (!call["function"].contains("arguments")) call["function"]["arguments"] = "{}";
        fixed.push_back(call);
      }
      out["tool_calls"] = fixed;
    }
    const ojson content = msg.contains("content") ? msg.at("content") : ojson(nullptr);
    if (content.is_string()) {
      out["content"] = content;
    } else if (content.is_array()) {  // content parts: only text can be used by this model
      std::string text;
      for (const auto& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part.at("text").is_string())
          bad_request(param + ".content", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
        text += part.at("text").get<std::string>();
      }
      out["content"] = text;
    } else if (content.is_null() && has_calls) {
      out["content"] = nullptr;  // the template tells tool-call turns by content none
    } else {
      bad_request(param + ".content", content.is_null() ? fmt::format("'{}.content' is required", param)
                                                        : fmt::format("'{}.content' must be a string", param),
                  content.is_null() ? "missing_required_parameter" : "invalid_type");
    }
    if (msg.contains("prefix") && !msg.at("prefix").is_null()) {
      if (!msg.at("prefix").is_boolean()) bad_request(param + ".prefix", "'prefix' must be a boolean", "invalid_type");
      is_prefix = msg.at("prefix").get<bool>();
      if (is_prefix && (i + 1 != messages.size() || role != "assistant" || !out["content"].is_string()))
        bad_request(param + ".prefix", "only the last message, an assistant one with text content, can be a prefix");
      out.erase("prefix");
    }
    norm.push_back(std::move(out));
  }
  // Chat prefix completion: the prompt ends with the last assistant message's text (no
  // end-of-sentence), rendered as the turn the generation prompt opens.
  std::string prefix;
  if (is_prefix) {
    prefix = norm.back().at("content").get<std::string>();
    norm.erase(norm.size() - 1);
    add_generation_prompt = true;
    if (norm.empty()) bad_request("messages", "a prefix message needs a message before it");
  }
  if (!system_extra.empty()) {
    if (norm[0].value("role", "") == "system" && norm[0].at("content").is_string())
      norm[0]["content"] = norm[0].at("content").get<std::string>() + "\n\n" + system_extra;
    else
      norm.insert(norm.begin(), ojson{{"role", "system"}, {"content", system_extra}});
  }
  if (!m.tmpl || !m.tok)
    bad_request("messages", "this model directory has no chat template/tokenizer; use /v1/completions with token ids",
                "no_chat_template");
  ojson extra = ojson::object();
  if (!tools.is_null()) {
    if (!tools.is_array()) bad_request("tools", "'tools' must be an array", "invalid_type");
    extra["tools"] = tools;
  }
  std::string text;
  try {
    text = m.tmpl->render_ordered(norm, add_generation_prompt, extra) + prefix;
  } catch (const Error& e) {
    bad_request("messages", fmt::format("the chat template rejected the messages: {}", e.what()));
  }
  if (prefix_out) *prefix_out = prefix;
  return m.tok->encode(utf8_sanitize(text), true);
}

ChatRequest parse_chat(const ojson& j, const ModelInfo& m) {
  std::set<std::string> known = kCommonFields;
  known.insert({"messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
                "add_generation_prompt", "reasoning_effort", "modalities"});
  check_fields(j, known);
  ChatRequest r;
  r.c = parse_common(j, m, m.ctx, 1);
  r.logprobs = get_bool(j, "logprobs", false);
  r.top_logprobs = static_cast<int>(get_int(j, "top_logprobs", 0, 20, 0));
  if (has(j, "top_logprobs") && !r.logprobs) bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  if (!has(j, "messages")) bad_request("messages", "'messages' is required", "missing_required_parameter");
  const bool agp = get_bool(j, "add_generation_prompt", true);
  r.tools = parse_tools(j, m);
  if (r.tools.active()) {
    if (r.c.gen.constraint)
      bad_request("response_format", "'response_format' cannot be combined with tools; use tool_choice \"none\"");
    r.c.gen.constraint = tool_call_constraint(r.tools, *m.tok, m.vocab);
  }
  r.prompt = chat_prompt(j.at("messages"), agp, has(j, "tools") ? j.at("tools") : ojson(nullptr),
                         r.tools.active() ? tools_system_prompt(r.tools) : "", m, &r.assistant_prefix);
  // max_tokens defaults to the rest of the context; the engine clamps it there anyway.
  const bool explicit_max = has(j, "max_tokens") || has(j, "max_completion_tokens");
  check_prompt_length(r.prompt.size(), explicit_max ? r.c.gen.max_tokens : 1, m, "messages");
  r.c.gen.logprobs = r.logprobs ? r.top_logprobs : -1;
  const size_t tail = std::min<size_t>(r.prompt.size(), 4);
  r.think_open = prompt_opens_think(m.tok->decode(std::span(r.prompt).last(tail), false));
  // A prefix that opens tool calls: the tool-call constraint follows its tokens first, so the
  // generation continues (and, for a complete call, closes) the calls it started.
  if (r.tools.active() && r.assistant_prefix.find(kCallsBegin) != std::string::npos) {
    auto ids = std::make_shared<const std::vector<int32_t>>(m.tok->encode(utf8_sanitize(r.assistant_prefix), true));
    ConstraintFactory inner = std::move(r.c.gen.constraint);
    r.c.gen.constraint = [inner, ids]() {
      std::unique_ptr<TokenConstraint> c = inner();
      for (int32_t t : *ids) c->accept(t);
      return c;
    };
  }
  return r;
}

TokenizeRequest parse_tokenize(const ojson& j, const ModelInfo& m) {
  check_fields(j, {"model", "prompt", "messages", "add_generation_prompt", "add_special_tokens", "tools", "tool_choice",
                   "parallel_tool_calls"});
  TokenizeRequest r;
  if (has(j, "messages")) {
    if (has(j, "prompt")) bad_request("prompt", "give either 'prompt' or 'messages', not both");
    const ToolsRequest tools = parse_tools(j, m);
    r.tokens = chat_prompt(j.at("messages"), get_bool(j, "add_generation_prompt", true),
                           has(j, "tools") ? j.at("tools") : ojson(nullptr),
                           tools.active() ? tools_system_prompt(tools) : "", m);
    return r;
  }
  if (!has(j, "prompt")) bad_request("prompt", "'prompt' or 'messages' is required", "missing_required_parameter");
  if (!j.at("prompt").is_string()) bad_request("prompt", "'prompt' must be a string", "invalid_type");
  const std::string text = j.at("prompt").get<std::string>();
  r.tokens = encode_text(m, text, get_bool(j, "add_special_tokens", true), "prompt");
  return r;
}

std::vector<int32_t> parse_detokenize(const ojson& j, const ModelInfo& m) {
  check_fields(j, {"model", "tokens"});
  if (!has(j, "tokens")) bad_request("tokens", "'tokens' is required", "missing_required_parameter");
  if (!j.at("tokens").is_array()) bad_request("tokens", "'tokens' must be an array of token ids", "invalid_type");
  need_tokenizer(m, "tokens");
  return token_array(j.at("tokens"), "tokens", m);
}

}  // namespace dsv3::server
