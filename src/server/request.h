// Parsing and validation of the OpenAI-style request bodies. Every function here throws ApiError
// (status 400 with the offending parameter) for anything a client can get wrong, and nothing
// else: they are fuzzed directly by tests/test_server.cc.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/api_error.h"
#include "server/tool_calls.h"

namespace dsv3 {
class Tokenizer;
struct ChatTemplate;
}  // namespace dsv3

namespace dsv3::server {

class VocabIndex;

// What validation needs to know about the served model.
struct ModelInfo {
  int64_t vocab_size = 0;
  int64_t ctx = 0;
  int32_t bos_id = 0;
  bool has_mtp = false;
  bool speculative = false;               // --speculative mtp: default for every request
  const Tokenizer* tok = nullptr;         // null: token ids only
  const ChatTemplate* tmpl = nullptr;     // null: no chat endpoint
  std::shared_ptr<const VocabIndex> vocab;  // token bytes for constrained decoding (with tok)
  int max_n = 16;                         // most choices per request
};

// Options shared by both generation endpoints.
struct CommonRequest {
  GenerateOptions gen;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage = false;
  int n = 1;
  bool tokens_as_ids = false;   // render tokens as "token_id:N" (default without a tokenizer)
  bool return_token_ids = false;  // add token_ids / prompt_token_ids to each choice
};

struct CompletionRequest {
  CommonRequest c;
  std::vector<std::vector<int32_t>> prompts;  // [prompts][tokens]
  bool echo = false;
  int logprobs = -1;  // -1: none
};

struct ChatRequest {
  CommonRequest c;
  std::vector<int32_t> prompt;
  bool logprobs = false;
  int top_logprobs = 0;
  ToolsRequest tools;
  bool think_open = false;  // the rendered prompt ends with <think> (R1): output starts as reasoning
  // Chat prefix completion: the last (assistant, "prefix": true) message's text. With tools, tool
  // calls it already opens are parsed as if generated (the output starts after it).
  std::string assistant_prefix;
};

struct TokenizeRequest {
  std::vector<int32_t> tokens;
};

// response_format: {"type": "text"} (nothing), {"type": "json_object"} or {"type": "json_schema",
// "json_schema": {"name", "schema", "strict"}}; the factory constrains decoding to that JSON.
ConstraintFactory parse_response_format(const nlohmann::ordered_json& rf, const ModelInfo& m);

// Parses JSON text into an object, rejecting malformed text, non-objects and deep nesting.
nlohmann::ordered_json parse_body(const std::string& body);

CompletionRequest parse_completion(const nlohmann::ordered_json& j, const ModelInfo& m);
ChatRequest parse_chat(const nlohmann::ordered_json& j, const ModelInfo& m);
TokenizeRequest parse_tokenize(const nlohmann::ordered_json& j, const ModelInfo& m);
std::vector<int32_t> parse_detokenize(const nlohmann::ordered_json& j, const ModelInfo& m);

// The chat prompt: messages validated and normalised (content parts joined), rendered with the
// template and encoded with special-token matching, as apply_chat_template(tokenize=True) does.
// `system_extra` (the tool definitions) ends the system prompt, or is one when there is none.
// `prefix`, when given, gets the text of a last {"role": "assistant", "prefix": true} message.
std::vector<int32_t> chat_prompt(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& tools, const std::string& system_extra,
                                 const ModelInfo& m, std::string* prefix = nullptr);

}  // namespace dsv3::server
