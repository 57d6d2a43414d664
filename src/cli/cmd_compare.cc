// dsv3 compare -m MODEL --base BASE --file TEXT...: how far MODEL's next-token distributions are
// from BASE's on text (a quantised checkpoint against the one it came from): mean and max
// KL(base || model), top-1 agreement, mean |logprob difference| of the actual next tokens.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {
namespace {

struct CompareOpts {
  ModelArgs model;
  std::string base;
  std::vector<std::string> files;
  std::string ids;  // --prompt-ids: token ids instead of text
  int64_t window = 512, max_tokens = 8192;
  bool json = false;
};

int run_compare(const CompareOpts& o) {
  if (o.window < 2) fail("--window must be at least 2 (got {})", o.window);
  if (o.max_tokens < 2) fail("--max-tokens must be at least 2 (got {})", o.max_tokens);
  if (o.files.empty() == o.ids.empty()) fail("give text FILES or --prompt-ids (one of them)");
  std::vector<std::vector<int32_t>> texts;
  if (!o.ids.empty()) {
    texts.push_back(parse_ids(o.ids));
  } else {
    if (!Tokenizer::available(o.model.dir)) fail("{}: compare needs tokenizer.json (or --prompt-ids)", o.model.dir);
    const auto tok = Tokenizer::load(o.model.dir);
    for (const std::string& path : o.files) texts.push_back(tok->encode(read_text_file(path), false));
  }
  ModelArgs base_args = o.model;
  base_args.dir = o.base;
  auto model = load_model(o.model);
  auto base = load_model(base_args);
  const int64_t V = model->config().vocab_size;
  if (base->config().vocab_size != V)
    fail("{} has {} vocabulary ids but {} has {}", o.base, base->config().vocab_size, o.model.dir, V);
  const int64_t window = std::min(o.window, std::min(model->ctx(), base->ctx()));

  // Each file is cut into windows that start from an empty cache; every position but a window's
  // last predicts the next token of the text.
  double kl_sum = 0, kl_max = 0, dlp_sum = 0;
  int64_t positions = 0, agree = 0;
  std::vector<float> lm, lb;
  ForwardOutput om, ob;
  for (const std::vector<int32_t>& ids : texts) {
    for (int64_t s = 0; s + 1 < static_cast<int64_t>(ids.size()) && positions < o.max_tokens; s += window) {
      const int64_t k = std::min<int64_t>(window, static_cast<int64_t>(ids.size()) - s);
      SeqCache cm, cb;
      SeqInput im{&cm, std::span<const int32_t>(ids.data() + s, static_cast<size_t>(k)), 0, true, nullptr};
      SeqInput ib = im;
      ib.cache = &cb;
      model->forward(std::span<SeqInput>(&im, 1), om);
      base->forward(std::span<SeqInput>(&ib, 1), ob);
      free_seq(model->cache(), cm);
      free_seq(base->cache(), cb);
      for (int64_t r = 0; r + 1 < k && positions < o.max_tokens; ++r, ++positions) {
        log_softmax(om.logits.data() + r * V, V, lm);
        log_softmax(ob.logits.data() + r * V, V, lb);
        double kl = 0;
        for (int64_t v = 0; v < V; ++v) {
          const double pb = std::exp(static_cast<double>(lb[static_cast<size_t>(v)]));
          if (pb > 0) kl += pb * (static_cast<double>(lb[static_cast<size_t>(v)]) - lm[static_cast<size_t>(v)]);
        }
        kl = std::max(kl, 0.0);  // rounding can leave -1e-9
        kl_sum += kl;
        kl_max = std::max(kl_max, kl);
        agree += std::max_element(lm.begin(), lm.end()) - lm.begin() == std::max_element(lb.begin(), lb.end()) - lb.begin();
        const size_t next = static_cast<size_t>(ids[static_cast<size_t>(s + r + 1)]);
        dlp_sum += std::fabs(static_cast<double>(lm[next]) - lb[next]);
      }
    }
  }
  if (positions == 0) fail("compare: the text holds fewer than 2 tokens");
  const double n = static_cast<double>(positions);
  if (o.json) {
    nlohmann::ordered_json j;
    j["model"] = o.model.dir;
    j["base"] = o.base;
    j["positions"] = positions;
    j["mean_kl"] = kl_sum / n;
    j["max_kl"] = kl_max;
    j["top1_agreement"] = agree / n;
    j["mean_abs_dlogprob"] = dlp_sum / n;
    fmt::print("{}\n", j.dump());
  } else {
    fmt::print("positions        {}\nmean KL          {:.6f} nats (base || model)\nmax KL           {:.6f}\n"
               "top-1 agreement  {:.4f} ({}/{})\nmean |dlogprob|  {:.6f} (actual next tokens)\n",
               positions, kl_sum / n, kl_max, agree / n, agree, positions, dlp_sum / n);
  }
  return 0;
}

const bool registered = register_command(
    {"compare",
     "Next-token distributions of a model against a base model on text: mean/max KL(base || model), top-1 "
     "agreement, mean |logprob difference| (e.g. an int4 checkpoint against the FP8 one it came from)",
     [](CLI::App& app) {
       auto o = std::make_shared<CompareOpts>();
       add_model_args(app, o->model);
       app.add_option("--base", o->base, "The reference checkpoint directory (same vocabulary)")->required();
       app.add_option("files", o->files, "UTF-8 text files (tokenised with the model's tokenizer)");
       app.add_option("--prompt-ids", o->ids, "Comma-separated token ids instead of text files");
       app.add_option("--window", o->window, "Tokens per forward pass; each window starts a fresh context")
           ->capture_default_str();
       app.add_option("--max-tokens", o->max_tokens, "Stop after this many positions")->capture_default_str();
       app.add_flag("--json", o->json, "Print one JSON object");
       return [o] { return run_compare(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
