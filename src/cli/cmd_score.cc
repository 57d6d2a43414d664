// dsv3 score -m DIR --prompt-ids ... [--top K] [--mtp] --json: per-token logprobs of a prompt, and
// with --mtp the MTP head's argmax and log-probability of token i+2 at each position i.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/sampler.h"

namespace dsv3::cli {
namespace {

struct ScoreOpts {
  ModelArgs model;
  std::string ids;
  int top = 0;
  bool mtp = false, json = true;
  int64_t chunk = 256;
};

int run_score(const ScoreOpts& o) {
  const std::vector<int32_t> ids = parse_ids(o.ids);
  if (o.top < 0 || o.top > 100) fail("--top must be between 0 and 100");
  if (o.chunk <= 0) fail("--chunk must be positive");
  auto model = load_model(o.model);
  if (o.mtp && !model->has_mtp()) fail("--mtp: this checkpoint has no MTP module");
  const int64_t n = static_cast<int64_t>(ids.size()), V = model->config().vocab_size;
  SeqCache seq;
  nlohmann::ordered_json lps = nlohmann::json::array({nullptr}), tops = nlohmann::json::array({nullptr});
  std::vector<float> hidden;  // [n, H], for MTP
  std::vector<float> lsm;
  ForwardOutput out;
  for (int64_t s = 0; s < n; s += o.chunk) {  // chunked prefill bounds the workspace
    const int64_t k = std::min(o.chunk, n - s);
    SeqInput in{&seq, std::span<const int32_t>(ids.data() + s, static_cast<size_t>(k)), s, true, nullptr};
    model->forward(std::span<SeqInput>(&in, 1), out, o.mtp);
    if (o.mtp) hidden.insert(hidden.end(), out.hidden.begin(), out.hidden.end());
    for (int64_t r = 0; r < k; ++r) {
      const int64_t i = s + r;  // logits at position i predict token i+1
      if (i + 1 >= n) break;
      log_softmax(out.logits.data() + r * V, V, lsm);
      lps.push_back(lsm[static_cast<size_t>(ids[static_cast<size_t>(i + 1)])]);
      if (o.top > 0) {
        nlohmann::ordered_json t = nlohmann::ordered_json::object();
        for (const auto& [id, lp] : top_logprobs(lsm, o.top)) t["token_id:" + std::to_string(id)] = lp;
        tops.push_back(t);
      } else {
        tops.push_back(nlohmann::ordered_json::object());
      }
    }
  }
  nlohmann::ordered_json j;
  j["token_logprobs"] = lps;
  j["top_logprobs"] = tops;
  if (o.mtp) {
    // MTP row i (0 <= i < n-1) sees h_i and token i+1 and predicts token i+2: its argmax for
    // every row, its log-probability of the actual token where there is one (i < n-2).
    nlohmann::json am = nlohmann::json::array(), mlp = nlohmann::json::array();
    if (n > 1) {
      SeqInput in{&seq, std::span<const int32_t>(ids.data() + 1, static_cast<size_t>(n - 1)), 0, true, hidden.data()};
      model->forward_mtp(std::span<SeqInput>(&in, 1), out);
      for (int64_t i = 0; i < n - 1; ++i) {
        const float* row = out.logits.data() + i * V;
        am.push_back(std::max_element(row, row + V) - row);
        if (i + 2 < n) {
          log_softmax(row, V, lsm);
          mlp.push_back(lsm[static_cast<size_t>(ids[static_cast<size_t>(i + 2)])]);
        } else {
          mlp.push_back(nullptr);
        }
      }
    }
    am.push_back(nullptr);
    mlp.push_back(nullptr);
    j["mtp_argmax"] = am;
    j["mtp_token_logprobs"] = mlp;
  }
  fmt::print("{}\n", j.dump());
  return 0;
}

const bool registered = register_command(
    {"score", "Log-probabilities of every token of a prompt (and the MTP head's predictions with --mtp)",
     [](CLI::App& app) {
       auto o = std::make_shared<ScoreOpts>();
       add_model_args(app, o->model);
       app.add_option("--prompt-ids", o->ids, "Comma-separated token ids")->required();
       app.add_option("--top", o->top, "Also report the K most likely tokens at each position");
       app.add_flag("--mtp", o->mtp,
                    "Also report mtp_argmax[i], the MTP head's prediction of token i+2, and mtp_token_logprobs[i], "
                    "its log-probability of the actual token i+2 (null for the last two positions)");
       app.add_flag("--json", o->json, "JSON output (the only format)");
       app.add_option("--chunk", o->chunk, "Prefill chunk size")->capture_default_str();
       return [o] { return run_score(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
