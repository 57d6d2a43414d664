// Server-sent events for stream=true: `data: {chunk}\n\n` per batch of new tokens, ending with
// `data: [DONE]`. The HTTP thread waits on the request's condition variable between writes; when
// a write fails (client gone) or the response is torn down early, the engine requests are
// cancelled so their batch slots free at once.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "server/response.h"

namespace httplib {
class DataSink;
}

namespace dsv3::server {

class EngineLoop;
class Metrics;

struct StreamOptions {
  bool chat = false;
  int logprobs = -1;      // completions: top N; chat: top_logprobs (with `chat_logprobs`)
  bool chat_logprobs = false;
  bool echo = false;
  bool include_usage = false;
  bool tools = false;       // chat with tools: tool-call tokens become tool_calls deltas
  bool think_open = false;  // the prompt ends inside <think>: the text starts as reasoning
  std::string assistant_prefix;  // chat prefix completion: its text (tool calls it opens)
};

class SseStream {
 public:
  SseStream(ResponseCtx ctx, std::shared_ptr<RequestState> st, EngineLoop& loop, Metrics& metrics,
            const StreamOptions& opt);
  // One round of httplib's content provider: waits up to a second for news, writes it (or a
  // keep-alive comment). Returns false when the client is gone.
  bool pump(httplib::DataSink& sink);
  // The response is finished or torn down; cancels whatever has not finished.
  void close();

 private:
  // Events for one choice's new pieces (caller holds st_->mu).
  void collect(ChoiceState& c, size_t ci, std::vector<std::string>& out);

  ResponseCtx ctx_;
  std::shared_ptr<RequestState> st_;
  EngineLoop& loop_;
  Metrics& metrics_;
  StreamOptions opt_;
  bool started_ = false, done_ = false;
  std::vector<bool> final_sent_;
  std::vector<std::unique_ptr<CompletionLogprobs>> lps_;  // per choice: running text offsets
  std::vector<std::unique_ptr<ChatOutput>> outputs_;      // per choice (chat)
};

}  // namespace dsv3::server
