// OpenAI response objects: chat.completion, text_completion, their streaming chunks, logprobs and
// usage (with DeepSeek's prompt_cache_hit_tokens / prompt_cache_miss_tokens).
//
// Completions text_offset: offsets count Unicode code points (as Python's len(), which OpenAI and
// vLLM use) into the returned `text`; each token's offset is where its decoded text starts. With
// echo the prompt's text (special tokens included, decoded token by token) comes first. A token
// that ends inside a UTF-8 character has empty text; the character appears with the token that
// completes it.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "server/job.h"
#include "server/reasoning.h"
#include "server/request.h"

namespace dsv3::server {

struct ResponseCtx {
  std::string id;
  int64_t created = 0;
  std::string model;
  const Tokenizer* tok = nullptr;
  bool as_ids = false;
  bool return_token_ids = false;
};

// The text of one chat choice, split as it streams into reasoning_content (a leading
// <think>...</think>), content and, with tools, tool_calls.
class ChatOutput {
 public:
  // prefix: the assistant prefix the prompt ends with; with tools, a tool-call text in it is
  // parsed as the start of this choice's calls (its content is the client's own, not repeated).
  ChatOutput(bool think_open, bool tools, const std::string& prefix = "") : reason_(think_open), tools_(tools) {
    if (tools_ && prefix.find(kCallsBegin) != std::string::npos) tp_.push(prefix);
  }
  struct Delta {
    std::string reasoning, content;
    std::vector<ToolCall> calls;  // calls completed by this text
    size_t first_call = 0;        // index of calls[0] among the choice's calls
  };
  Delta push(const std::string& text, bool last);
  bool saw_think() const { return reason_.saw_think(); }
  size_t calls() const { return calls_out_; }

 private:
  ReasoningParser reason_;
  ToolCallParser tp_;
  bool tools_;
  size_t calls_out_ = 0;
};

nlohmann::ordered_json usage_json(int64_t prompt, int64_t completion, int64_t cached);
// Summed over the choices of a request; prompts counted once per choice, as OpenAI does for n>1.
nlohmann::ordered_json usage_json(const RequestState& st);
std::string finish_reason(const FinishInfo& f);
size_t utf8_length(const std::string& s);

// Completions logprobs: {tokens, token_logprobs, top_logprobs, text_offset}, built token by token.
class CompletionLogprobs {
 public:
  CompletionLogprobs(const ResponseCtx& ctx, int64_t offset) : ctx_(ctx), offset_(offset) {}
  // lp == nullptr: the first prompt token (no logprob: null entries).
  void add(int32_t token, const TokenLogprob* lp, const std::string& raw_text);
  void advance(const std::string& raw_text) { offset_ += static_cast<int64_t>(utf8_length(raw_text)); }
  nlohmann::ordered_json take();
  int64_t offset() const { return offset_; }

 private:
  const ResponseCtx& ctx_;
  int64_t offset_;
  nlohmann::ordered_json tokens_ = nlohmann::ordered_json::array(), lps_ = nlohmann::ordered_json::array(),
                         tops_ = nlohmann::ordered_json::array(), offs_ = nlohmann::ordered_json::array();
};

// Chat logprobs content entries: {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}.
nlohmann::ordered_json chat_logprob_entry(const ResponseCtx& ctx, const TokenLogprob& lp);

// The echoed prompt: its text and per-token offsets (logprobs when prompt_logprobs are given).
std::string echo_prompt(const ResponseCtx& ctx, const std::vector<int32_t>& prompt,
                        const std::vector<TokenLogprob>* prompt_logprobs, CompletionLogprobs* lps);

// Whole responses, built once every choice has finished (caller holds st.mu).
nlohmann::ordered_json completion_body(const ResponseCtx& ctx, const CompletionRequest& r, const RequestState& st);
nlohmann::ordered_json chat_body(const ResponseCtx& ctx, const ChatRequest& r, const RequestState& st);

nlohmann::ordered_json completion_chunk(const ResponseCtx& ctx, int index, const std::string& text,
                                        nlohmann::ordered_json logprobs, nlohmann::ordered_json finish);
nlohmann::ordered_json chat_chunk(const ResponseCtx& ctx, int index, nlohmann::ordered_json delta,
                                  nlohmann::ordered_json logprobs, nlohmann::ordered_json finish);

}  // namespace dsv3::server
