#include "server/job.h"

#include "core/error.h"
#include "server/api_error.h"
#include "server/engine_loop.h"
#include "server/metrics.h"

namespace dsv3::server {

std::string token_text(const Tokenizer* tok, int32_t id, bool as_ids) {
  if (as_ids || !tok) return "token_id:" + std::to_string(id);
  return tok->decode(std::span<const int32_t>(&id, 1), false);
}

namespace {

RequestCallbacks make_callbacks(EngineLoop& loop, Metrics& metrics, std::shared_ptr<RequestState> st, ChoiceState* c) {
  RequestCallbacks cb;
  // Both run on the step thread and only take st->mu, never the engine's lock (see EngineLoop).
  cb.on_token = [st, c, &metrics](int32_t t, const TokenLogprob* lp) {
    bool stopped = false;
    bool first = false;
    try {
      std::lock_guard<std::mutex> lk(st->mu);
      Piece p;
      p.token = t;
      if (lp) p.lp = *lp;
      if (c->dec) {
        p.raw = c->dec->push(t);
        p.shown = c->stops->push(p.raw);
        stopped = c->stops->stopped();
      }
      c->pieces.push_back(std::move(p));
      first = !st->first_token;
      st->first_token = true;
    } catch (const std::exception&) {
      stopped = true;  // out of memory while recording: end this request, not the server
    }
    if (first) metrics.on_first_token(std::chrono::duration<double>(std::chrono::steady_clock::now() - st->t0).count());
    st->cv.notify_all();
    return !stopped;
  };
  cb.on_finish = [st, c, &loop, &metrics](const FinishInfo& f) {
    try {
      std::lock_guard<std::mutex> lk(st->mu);
      if (c->dec) {
        Piece p;
        p.raw = c->dec->flush();
        p.shown = c->stops->push(p.raw);
        p.shown += c->stops->flush();
        if (!p.raw.empty() || !p.shown.empty()) c->pieces.push_back(std::move(p));
      }
      c->info = f;
      c->finished = true;
    } catch (const std::exception&) {
      std::lock_guard<std::mutex> lk(st->mu);
      c->info.reason = "error";
      c->info.error = "out of memory";
      c->finished = true;
    }
    metrics.on_finish(f.prompt_tokens, f.cached_tokens, f.completion_tokens,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - st->t0).count());
    loop.release(1);
    st->cv.notify_all();
  };
  return cb;
}

}  // namespace

std::shared_ptr<RequestState> start_generation(EngineLoop& loop, Metrics& metrics, const Tokenizer* tok,
                                               const std::vector<std::vector<int32_t>>& prompts, int n,
                                               const GenerateOptions& gen, const std::vector<std::string>& stop) {
  auto st = std::make_shared<RequestState>();
  for (size_t p = 0; p < prompts.size(); ++p)
    for (int k = 0; k < n; ++k) {
      auto c = std::make_unique<ChoiceState>();
      c->index = static_cast<int>(p) * n + k;
      c->prompt = prompts[p];
      if (tok) {
        c->dec = std::make_unique<StreamDecoder>(*tok, true);
        c->stops = std::make_unique<StopStrings>(stop);
      }
      st->choices.push_back(std::move(c));
    }
  size_t submitted = 0;
  try {
    for (auto& c : st->choices) {
      GenerateOptions g = gen;
      g.sampling.seed += static_cast<uint64_t>(c->index % n);
      const int64_t id = loop.submit(c->prompt, g, make_callbacks(loop, metrics, st, c.get()));
      {
        std::lock_guard<std::mutex> lk(st->mu);
        c->engine_id = id;
      }
      ++submitted;
    }
  } catch (const Error& e) {
    // Reserved slots of the requests never submitted go back; queued ones release on cancel.
    loop.release(static_cast<int64_t>(st->choices.size() - submitted));
    cancel_generation(loop, metrics, *st);
    throw ApiError(400, e.what(), "invalid_request_error", "prompt");
  }
  return st;
}

void cancel_generation(EngineLoop& loop, Metrics& metrics, RequestState& st) {
  std::vector<int64_t> ids;
  {
    std::lock_guard<std::mutex> lk(st.mu);
    for (const auto& c : st.choices)
      if (!c->finished && c->engine_id >= 0) ids.push_back(c->engine_id);
  }
  // Outside st.mu: the engine may be calling on_finish (which takes st.mu) under its own lock.
  for (int64_t id : ids) {
    loop.cancel(id);
    metrics.on_cancel();
  }
}

}  // namespace dsv3::server
