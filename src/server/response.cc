#include "server/response.h"

namespace dsv3::server {

using ojson = nlohmann::ordered_json;

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
  return n;
}

ChatOutput::Delta ChatOutput::push(const std::string& text, bool last) {
  ReasoningParser::Out r = reason_.push(text);
  if (last) {
    ReasoningParser::Out f = reason_.flush();
    r.reasoning += f.reasoning;
    r.content += f.content;
  }
  Delta d;
  d.reasoning = std::move(r.reasoning);
  d.first_call = calls_out_;
  if (!tools_) {
    d.content = std::move(r.content);
    return d;
  }
  d.content = tp_.push(r.content);
  if (last) d.content += tp_.flush();
  while (calls_out_ < tp_.calls().size()) d.calls.push_back(tp_.calls()[calls_out_++]);
  return d;
}

ojson usage_json(int64_t prompt, int64_t completion, int64_t cached) {
  ojson u;
  u["prompt_tokens"] = prompt;
  u["completion_tokens"] = completion;
  u["total_tokens"] = prompt + completion;
  u["prompt_cache_hit_tokens"] = cached;
  u["prompt_cache_miss_tokens"] = prompt - cached;
  u["prompt_tokens_details"] = {{"cached_tokens", cached}};
  return u;
}

ojson usage_json(const RequestState& st) {
  int64_t p = 0, c = 0, h = 0;
  for (const auto& ch : st.choices) {
    // A request cancelled before it ran has no FinishInfo counts; its prompt still counts.
    p += ch->finished ? ch->info.prompt_tokens : static_cast<int64_t>(ch->prompt.size());
    c += ch->finished ? ch->info.completion_tokens : static_cast<int64_t>(ch->pieces.size());
    h += ch->info.cached_tokens;
  }
  return usage_json(p, c, h);
}

std::string finish_reason(const FinishInfo& f) {
  if (f.reason == "length") return "length";
  return "stop";  // eos, stop token, stop string; "cancelled" only reaches clients that are gone
}

void CompletionLogprobs::add(int32_t token, const TokenLogprob* lp, const std::string& raw_text) {
  tokens_.push_back(token_text(ctx_.tok, token, ctx_.as_ids));
  offs_.push_back(offset_);
  if (!lp) {
    lps_.push_back(nullptr);
    tops_.push_back(nullptr);
  } else {
    lps_.push_back(lp->logprob);
    ojson top = ojson::object();
    for (const auto& [id, v] : lp->top) {
      const std::string key = token_text(ctx_.tok, id, ctx_.as_ids);
      if (!top.contains(key)) top[key] = v;  // two ids with the same text: keep the likelier
    }
    tops_.push_back(std::move(top));
  }
  advance(raw_text);
}

ojson CompletionLogprobs::take() {
  ojson j;
  j["tokens"] = std::move(tokens_);
  j["token_logprobs"] = std::move(lps_);
  j["top_logprobs"] = std::move(tops_);
  j["text_offset"] = std::move(offs_);
  tokens_ = ojson::array(), lps_ = ojson::array(), tops_ = ojson::array(), offs_ = ojson::array();
  return j;
}

ojson chat_logprob_entry(const ResponseCtx& ctx, const TokenLogprob& lp) {
  auto one = [&](int32_t id, float v) {
    ojson e;
    e["token"] = token_text(ctx.tok, id, ctx.as_ids);
    e["logprob"] = v;
    ojson bytes = ojson::array();
    if (ctx.tok)
      for (unsigned char b : ctx.tok->token_bytes(id)) bytes.push_back(static_cast<int>(b));
    e["bytes"] = ctx.tok ? bytes : ojson(nullptr);
    return e;
  };
  ojson e = one(lp.token, lp.logprob);
  ojson top = ojson::array();
  for (const auto& [id, v] : lp.top) top.push_back(one(id, v));
  e["top_logprobs"] = std::move(top);
  return e;
}

std::string echo_prompt(const ResponseCtx& ctx, const std::vector<int32_t>& prompt,
                        const std::vector<TokenLogprob>* prompt_logprobs, CompletionLogprobs* lps) {
  std::string text;
  std::unique_ptr<StreamDecoder> dec = ctx.tok ? std::make_unique<StreamDecoder>(*ctx.tok, false) : nullptr;
  for (size_t i = 0; i < prompt.size(); ++i) {
    const std::string piece = dec ? dec->push(prompt[i]) : "";
    text += piece;
    if (!lps) continue;
    const TokenLogprob* lp = nullptr;
    if (prompt_logprobs && i > 0 && i < prompt_logprobs->size()) lp = &(*prompt_logprobs)[i];
    lps->add(prompt[i], lp, piece);
  }
  if (dec) {
    const std::string rest = dec->flush();
    text += rest;
    if (lps) lps->advance(rest);
  }
  return text;
}

namespace {
ojson header(const ResponseCtx& ctx, const char* object) {
  ojson j;
  j["id"] = ctx.id;
  j["object"] = object;
  j["created"] = ctx.created;
  j["model"] = ctx.model;
  j["system_fingerprint"] = "dsv3";
  return j;
}

// vLLM's return_token_ids extension: the prompt's and the choice's ids beside the text.
void add_token_ids(ojson& ch, const std::vector<int32_t>& prompt, const std::vector<int32_t>& ids) {
  ch["prompt_token_ids"] = prompt;
  ch["token_ids"] = ids;
}

}  // namespace

ojson completion_body(const ResponseCtx& ctx, const CompletionRequest& r, const RequestState& st) {
  ojson j = header(ctx, "text_completion");
  ojson choices = ojson::array();
  for (const auto& c : st.choices) {
    CompletionLogprobs lps(ctx, 0);
    const bool want_lp = r.logprobs >= 0;
    std::string text;
    if (r.echo) text = echo_prompt(ctx, c->prompt, &c->info.prompt_logprobs, want_lp ? &lps : nullptr);
    std::vector<int32_t> ids;
    for (const Piece& p : c->pieces) {
      text += p.shown;
      if (p.token >= 0) ids.push_back(p.token);
      if (!want_lp) continue;
      if (p.token >= 0) lps.add(p.token, p.lp ? &*p.lp : nullptr, p.raw);
      else lps.advance(p.raw);
    }
    ojson ch;
    ch["index"] = c->index;
    ch["text"] = text;
    ch["logprobs"] = want_lp ? lps.take() : ojson(nullptr);
    ch["finish_reason"] = finish_reason(c->info);
    if (ctx.return_token_ids) add_token_ids(ch, c->prompt, ids);
    choices.push_back(std::move(ch));
  }
  j["choices"] = std::move(choices);
  j["usage"] = usage_json(st);
  return j;
}

ojson chat_body(const ResponseCtx& ctx, const ChatRequest& r, const RequestState& st) {
  ojson j = header(ctx, "chat.completion");
  ojson choices = ojson::array();
  for (const auto& c : st.choices) {
    std::string text;
    std::vector<int32_t> ids;
    ojson content = ojson::array();
    for (const Piece& p : c->pieces) {
      text += p.shown;
      if (p.token >= 0) ids.push_back(p.token);
      if (r.logprobs && p.lp) content.push_back(chat_logprob_entry(ctx, *p.lp));
    }
    ojson ch;
    ch["index"] = c->index;
    ChatOutput out(r.think_open, r.tools.active(), r.assistant_prefix);
    const ChatOutput::Delta d = out.push(text, true);
    ojson msg = {{"role", "assistant"}, {"content", d.content}};
    if (out.saw_think()) msg["reasoning_content"] = d.reasoning;
    std::string reason = finish_reason(c->info);
    if (!d.calls.empty()) {  // the tool-call tokens become tool_calls
      if (d.content.empty()) msg["content"] = nullptr;
      ojson calls = ojson::array();
      for (const ToolCall& call : d.calls) calls.push_back(tool_call_json(call, tool_call_id()));
      msg["tool_calls"] = std::move(calls);
      if (reason == "stop") reason = "tool_calls";
    }
    ch["message"] = std::move(msg);
    ch["logprobs"] = r.logprobs ? ojson{{"content", content}} : ojson(nullptr);
    ch["finish_reason"] = reason;
    if (ctx.return_token_ids) add_token_ids(ch, c->prompt, ids);
    choices.push_back(std::move(ch));
  }
  j["choices"] = std::move(choices);
  j["usage"] = usage_json(st);
  return j;
}

ojson completion_chunk(const ResponseCtx& ctx, int index, const std::string& text, ojson logprobs, ojson finish) {
  ojson j = header(ctx, "text_completion");
  ojson ch;
  ch["index"] = index;
  ch["text"] = text;
  ch["logprobs"] = std::move(logprobs);
  ch["finish_reason"] = std::move(finish);
  j["choices"] = ojson::array({std::move(ch)});
  return j;
}

ojson chat_chunk(const ResponseCtx& ctx, int index, ojson delta, ojson logprobs, ojson finish) {
  ojson j = header(ctx, "chat.completion.chunk");
  ojson ch;
  ch["index"] = index;
  ch["delta"] = std::move(delta);
  ch["logprobs"] = std::move(logprobs);
  ch["finish_reason"] = std::move(finish);
  j["choices"] = ojson::array({std::move(ch)});
  return j;
}

}  // namespace dsv3::server
