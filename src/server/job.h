// One HTTP generation request in flight: its choices (one engine request each), filled by the
// engine's step thread and read by the HTTP thread that answers the client. Results of a request
// go only to its own RequestState, so concurrent clients never see each other's tokens.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "runtime/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::server {

class EngineLoop;
class Metrics;

struct Piece {
  int32_t token = -1;       // -1: text flushed at the end, no token
  std::string raw;          // decoded text of this token (before stop strings)
  std::string shown;        // text released to the client with this token
  std::optional<TokenLogprob> lp;
};

struct ChoiceState {
  int index = 0;
  std::vector<int32_t> prompt;
  int64_t engine_id = -1;
  std::vector<Piece> pieces;  // guarded by RequestState::mu
  size_t sent = 0;            // pieces already streamed (HTTP thread only)
  bool finished = false;
  FinishInfo info;
  // Step thread only.
  std::unique_ptr<StreamDecoder> dec;
  std::unique_ptr<StopStrings> stops;
};

struct RequestState {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<ChoiceState>> choices;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  bool first_token = false;
  bool all_finished() const {
    for (const auto& c : choices)
      if (!c->finished) return false;
    return true;
  }
};

// Submits one engine request per (prompt, n) pair; choice index = prompt * n + k. The seed of
// choice k is seed + k so that n > 1 gives different samples. Throws ApiError (400) when the engine
// rejects a request; the ones already queued are cancelled then.
std::shared_ptr<RequestState> start_generation(EngineLoop& loop, Metrics& metrics, const Tokenizer* tok,
                                               const std::vector<std::vector<int32_t>>& prompts, int n,
                                               const GenerateOptions& gen, const std::vector<std::string>& stop);
// Cancels whatever is unfinished (client gone).
void cancel_generation(EngineLoop& loop, Metrics& metrics, RequestState& st);

// How a token is shown in logprobs: "token_id:N", or its text (invalid UTF-8 as U+FFFD).
std::string token_text(const Tokenizer* tok, int32_t id, bool as_ids);

}  // namespace dsv3::server
