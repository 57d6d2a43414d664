#include "server/stream.h"

#include <httplib.h>

#include "server/api_error.h"
#include "server/engine_loop.h"
#include "server/metrics.h"

namespace dsv3::server {

using ojson = nlohmann::ordered_json;

namespace {
std::string event(const ojson& j) { return "data: " + to_text(j) + "\n\n"; }
}  // namespace

SseStream::SseStream(ResponseCtx ctx, std::shared_ptr<RequestState> st, EngineLoop& loop, Metrics& metrics,
                     const StreamOptions& opt)
    : ctx_(std::move(ctx)), st_(std::move(st)), loop_(loop), metrics_(metrics), opt_(opt) {
  final_sent_.assign(st_->choices.size(), false);
  for (size_t i = 0; i < st_->choices.size(); ++i) lps_.push_back(std::make_unique<CompletionLogprobs>(ctx_, 0));
  for (size_t i = 0; i < st_->choices.size(); ++i) outputs_.push_back(std::make_unique<ChatOutput>(opt_.think_open, opt_.tools, opt_.assistant_prefix));
}

void SseStream::collect(ChoiceState& c, size_t ci, std::vector<std::string>& out) {
  std::string text;
  std::vector<int32_t> ids;
  ojson chat_lp = ojson::array();
  CompletionLogprobs& lp = *lps_[ci];
  bool any_lp = false;
  for (; c.sent < c.pieces.size(); ++c.sent) {
    const Piece& p = c.pieces[c.sent];
    text += p.shown;
    if (p.token >= 0) ids.push_back(p.token);
    if (opt_.chat) {
      if (opt_.chat_logprobs && p.lp) chat_lp.push_back(chat_logprob_entry(ctx_, *p.lp)), any_lp = true;
    } else if (opt_.logprobs >= 0) {
      if (p.token >= 0) lp.add(p.token, p.lp ? &*p.lp : nullptr, p.raw), any_lp = true;
      else lp.advance(p.raw);
    }
  }
  ojson delta = ojson::object();
  if (opt_.chat) {  // reasoning_content, content and tool_calls as each becomes known
    ChatOutput::Delta d = outputs_[ci]->push(text, c.finished);
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty() || (d.reasoning.empty() && d.calls.empty())) delta["content"] = d.content;
    ojson calls = ojson::array();
    for (size_t k = 0; k < d.calls.size(); ++k)
      calls.push_back(tool_call_json(d.calls[k], tool_call_id(), static_cast<int>(d.first_call + k)));
    if (!calls.empty()) delta["tool_calls"] = std::move(calls);
    text = d.reasoning + d.content;
  }
  if (!text.empty() || delta.contains("tool_calls") || any_lp || (ctx_.return_token_ids && !ids.empty())) {
    ojson j;
    if (opt_.chat) {
      j = chat_chunk(ctx_, c.index, std::move(delta), opt_.chat_logprobs ? ojson{{"content", chat_lp}} : ojson(nullptr),
                     nullptr);
    } else {
      j = completion_chunk(ctx_, c.index, text, opt_.logprobs >= 0 ? lp.take() : ojson(nullptr), nullptr);
    }
    if (ctx_.return_token_ids) j["choices"][0]["token_ids"] = ids;
    out.push_back(event(j));
  }
  if (c.finished && !final_sent_[ci]) {
    final_sent_[ci] = true;
    if (c.info.reason == "error") {
      out.push_back(event(error_body(500, "generation failed: " + c.info.error, "server_error")));
      return;
    }
    std::string reason = finish_reason(c.info);
    if (opt_.chat && outputs_[ci]->calls() > 0 && reason == "stop") reason = "tool_calls";
    out.push_back(event(opt_.chat ? chat_chunk(ctx_, c.index, ojson::object(), nullptr, reason)
                                  : completion_chunk(ctx_, c.index, "", nullptr, reason)));
  }
}

bool SseStream::pump(httplib::DataSink& sink) {
  if (done_) return false;
  std::vector<std::string> out;
  bool finished = false;
  if (!started_) {
    started_ = true;
    // First chunks at once: headers reach the client even while the request waits in the queue.
    for (const auto& c : st_->choices) {
      if (opt_.chat) {
        out.push_back(event(chat_chunk(ctx_, c->index, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr)));
      } else if (opt_.echo) {  // echo with logprobs is refused for streams (prompt logprobs come at the end)
        out.push_back(event(completion_chunk(ctx_, c->index, echo_prompt(ctx_, c->prompt, nullptr, nullptr), nullptr,
                                             nullptr)));
      }
    }
    if (!opt_.chat && opt_.echo)
      for (size_t i = 0; i < st_->choices.size(); ++i)
        lps_[i]->advance(echo_prompt(ctx_, st_->choices[i]->prompt, nullptr, nullptr));
  } else {
    std::unique_lock<std::mutex> lk(st_->mu);
    auto news = [&] {
      for (size_t i = 0; i < st_->choices.size(); ++i) {
        const auto& c = st_->choices[i];
        if (c->sent < c->pieces.size() || (c->finished && !final_sent_[i])) return true;
      }
      return false;
    };
    st_->cv.wait_for(lk, std::chrono::seconds(1), news);
    for (size_t i = 0; i < st_->choices.size(); ++i) collect(*st_->choices[i], i, out);
    finished = st_->all_finished();
    if (finished && opt_.include_usage) {
      ojson u = opt_.chat ? chat_chunk(ctx_, 0, ojson::object(), nullptr, nullptr)
                          : completion_chunk(ctx_, 0, "", nullptr, nullptr);
      u["choices"] = ojson::array();
      u["usage"] = usage_json(*st_);
      out.push_back(event(u));
    }
  }
  // A comment line keeps idle connections alive and finds clients that have gone.
  if (out.empty()) out.push_back(": keep-alive\n\n");
  for (const auto& e : out)
    if (!sink.write(e.data(), e.size())) return false;
  if (finished) {
    static const std::string kDone = "data: [DONE]\n\n";
    if (!sink.write(kDone.data(), kDone.size())) return false;
    done_ = true;
    sink.done();
  }
  return true;
}

void SseStream::close() { cancel_generation(loop_, metrics_, *st_); }

}  // namespace dsv3::server
