// dsv3 bench: prefill and decode speed, achieved weight-read bandwidth beside the machine's
// measured read bandwidth, and resident memory.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli/command.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/log.h"
#include "ops/bandwidth.h"
#include "ops/ops.h"
#include "runtime/engine.h"

namespace dsv3::cli {
namespace {

struct BenchOpts {
  ModelArgs model;
  int64_t p = 128, n = 32;
  int reps = 3;
  int64_t parallel = 1;
  int64_t draft_max_batch = EngineOptions{}.draft_max_batch;
  bool json = false, speculative = false, no_bw = false;
};

int64_t proc_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      std::istringstream ss(line.substr(std::string(key).size()));
      int64_t v = 0;
      ss >> v;
      return v;
    }
  return 0;
}

int run_bench(const BenchOpts& o) {
  if (o.p <= 0 || o.n <= 1) fail("-p must be >= 1 and -n >= 2");
  if (o.parallel < 1 || o.reps < 1) fail("--parallel and --reps must be >= 1");
  if (o.draft_max_batch < 0) fail("--draft-max-batch must be >= 0 (0: no limit), got {}", o.draft_max_batch);
  auto model = load_model(o.model);
  const ModelConfig& c = model->config();
  if (o.p + o.n > model->ctx()) fail("-p + -n ({}) exceed the context of {}", o.p + o.n, model->ctx());
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> dist(2, static_cast<int32_t>(c.vocab_size - 1));
  const double bytes_tok = model->decode_bytes_per_token();
  double best_pre = 0, best_dec = 0, best_agg = 0;
  // The roofline is measured right after each decode, so both see the same neighbours on a
  // shared host (measured minutes apart, they were seen to differ by 1.7x); the fraction
  // reported is the median over repetitions of decode GB/s over that repetition's bandwidth.
  std::vector<double> bws, fractions;
  FinishInfo last;
  int64_t par_drafted = 0, par_accepted = 0;  // the --parallel streams' drafts, last repetition
  // Repetition -1 is a warm-up, not recorded: it maps the weights and grows the workspaces.
  for (int r = -1; r < o.reps; ++r) {
    // One request alone (prefill and decode speed), then --parallel requests decoding together
    // (aggregate throughput of continuous batching).
    for (int64_t par : {int64_t{1}, o.parallel}) {
      EngineOptions eo;
      eo.prefill_chunk = o.p;
      eo.prefix_cache = false;
      eo.max_batch = par;
      eo.draft_max_batch = o.draft_max_batch;
      Engine engine(*model, eo);
      GenerateOptions g;
      g.max_tokens = o.n;
      g.ignore_eos = true;
      g.speculative = o.speculative;
      std::vector<FinishInfo> done;
      for (int64_t i = 0; i < par; ++i) {
        std::vector<int32_t> prompt(static_cast<size_t>(o.p));
        for (auto& t : prompt) t = dist(rng);
        prompt[0] = static_cast<int32_t>(c.bos_token_id);
        engine.submit(prompt, g, RequestCallbacks{nullptr, [&](const FinishInfo& f) { done.push_back(f); }});
      }
      while (static_cast<int64_t>(done.size()) < par) engine.step();
      double tokens = 0, span = 0;
      for (const FinishInfo& f : done) {
        if (f.reason == "error") fail("bench: {}", f.error);
        tokens += static_cast<double>(f.completion_tokens - 1);
        span = std::max(span, f.decode_seconds);
      }
      if (r < 0) break;
      if (par == 1) {
        last = done[0];
        const double dec = tokens / span;
        best_pre = std::max(best_pre, static_cast<double>(o.p) / last.prefill_seconds);
        best_dec = std::max(best_dec, dec);
        if (!o.no_bw) {
          bws.push_back(ops::measure_read_bandwidth(size_t(1) << 30, 3));
          fractions.push_back(bytes_tok * dec / 1e9 / bws.back());
        }
      }
      if (par == o.parallel) {
        best_agg = std::max(best_agg, tokens / span);
        par_drafted = par_accepted = 0;
        for (const FinishInfo& f : done) par_drafted += f.drafted, par_accepted += f.accepted;
      }
      if (o.parallel == 1) break;
    }
  }
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  };
  // Expert parallelism (mpirun): each rank's resident weights, and the bytes the expert
  // all-to-alls move per decode token (one request: a 1-token prompt, then n-1 decode steps).
  nlohmann::ordered_json ranks = nlohmann::json::array();
  double comm_tok = 0;
  if (model->ep_size() > 1) {
    const std::vector<RankStats> before = model->expert_parallel_stats();
    EngineOptions eo;
    eo.prefix_cache = false;
    Engine engine(*model, eo);
    GenerateOptions g;
    g.max_tokens = o.n;
    g.ignore_eos = true;
    bool finished = false;
    engine.submit({static_cast<int32_t>(c.bos_token_id)}, g, RequestCallbacks{nullptr, [&](const FinishInfo&) { finished = true; }});
    while (!finished) engine.step();
    const std::vector<RankStats> after = model->expert_parallel_stats();
    for (size_t r = 0; r < after.size(); ++r) {
      comm_tok += (after[r].bytes_sent - before[r].bytes_sent) / static_cast<double>(o.n);
      ranks.push_back({{"rank", r}, {"resident_weight_bytes", after[r].resident_weight_bytes},
                       {"planned_weight_bytes", after[r].planned_weight_bytes}});
    }
  }
  const double achieved = bytes_tok * best_dec / 1e9;
  const double bw = median(bws), fraction = median(fractions);
  nlohmann::ordered_json j;
  j["model"] = o.model.dir;
  j["threads"] = ops::num_threads();
  j["prompt_tokens"] = o.p;
  j["decode_tokens"] = o.n;
  j["prefill_tok_s"] = best_pre;
  j["decode_tok_s"] = best_dec;
  j["decode_bytes_per_token"] = bytes_tok;
  j["decode_weight_gb_s"] = achieved;
  j["memory_read_gb_s"] = bw;
  j["bandwidth_fraction"] = fraction;
  j["memory_read_gb_s_per_rep"] = bws;
  j["bandwidth_fraction_per_rep"] = fractions;
  j["weights_bytes"] = model->weight_bytes();
  j["kv_cache_bytes_per_token"] = c.kv_cache_dim() * c.total_layers() * static_cast<int64_t>(model->cache().elem_bytes());
  j["peak_rss_bytes"] = proc_status_kb("VmHWM:") * 1024;
  if (o.parallel > 1) {
    j["parallel"] = o.parallel;
    j["aggregate_decode_tok_s"] = best_agg;
    j["aggregate_speedup"] = best_agg / best_dec;
  }
  if (o.speculative) {
    j["mtp"] = {{"drafted", last.drafted}, {"accepted", last.accepted}};
    if (o.parallel > 1) j["mtp_parallel"] = {{"drafted", par_drafted}, {"accepted", par_accepted}};
  }
  if (!ranks.empty()) {
    j["ranks"] = ranks;
    j["comm_bytes_per_decode_token"] = comm_tok;
    j["comm_bytes_per_decode_token_ideal"] = model->ideal_comm_bytes_per_token();
  }
  if (o.json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("model             {} ({} threads)\n", o.model.dir, ops::num_threads());
  fmt::print("prefill           {:.1f} tok/s ({} tokens)\n", best_pre, o.p);
  fmt::print("decode            {:.2f} tok/s ({} tokens)\n", best_dec, o.n);
  if (o.parallel > 1)
    fmt::print("{} streams         {:.2f} tok/s aggregate ({:.2f}x one stream)\n", o.parallel, best_agg, best_agg / best_dec);
  if (o.speculative) {
    fmt::print("MTP drafts        {} accepted of {} (one stream)", last.accepted, last.drafted);
    if (o.parallel > 1) fmt::print("; {} of {} ({} streams)", par_accepted, par_drafted, o.parallel);
    fmt::print("\n");
  }
  fmt::print("weights per token {:.1f} MB -> {:.1f} GB/s achieved\n", bytes_tok / 1e6, achieved);
  if (bw > 0) {
    fmt::print("memory bandwidth  {:.1f} GB/s measured (median of {}, each right after a decode)\n", bw, bws.size());
    fmt::print("roofline fraction {:.0f}% (median of per-repetition decode GB/s / bandwidth:", 100 * fraction);
    for (double f : fractions) fmt::print(" {:.0f}%", 100 * f);
    fmt::print(")\n");
  }
  fmt::print("peak RSS          {:.1f} MB (weights {:.1f} MB mmap'd)\n", proc_status_kb("VmHWM:") / 1024.0,
             model->weight_bytes() / 1e6);
  for (const auto& r : ranks)
    fmt::print("rank {:<2}           {:.1f} MB of weights resident ({:.1f} MB planned: {})\n", r["rank"].get<int>(),
               r["resident_weight_bytes"].get<double>() / 1e6, r["planned_weight_bytes"].get<double>() / 1e6,
               r["rank"].get<int>() == 0 ? "all but other ranks' experts" : "its routed experts");
  if (!ranks.empty())
    fmt::print("all-to-all        {:.1f} KB per decode token ({:.1f} KB ideal)\n", comm_tok / 1e3,
               model->ideal_comm_bytes_per_token() / 1e3);
  return 0;
}

const bool registered = register_command(
    {"bench", "Prefill/decode speed, achieved GB/s of weight reads vs measured memory bandwidth", [](CLI::App& app) {
       auto o = std::make_shared<BenchOpts>();
       add_model_args(app, o->model);
       app.add_option("-p,--prompt-tokens", o->p, "Prompt length for prefill")->capture_default_str();
       app.add_option("-n,--decode-tokens", o->n, "Tokens to decode")->capture_default_str();
       app.add_option("--reps", o->reps, "Repetitions: best speeds are reported, and the median bandwidth fraction")->capture_default_str();
       app.add_option("--parallel", o->parallel, "Also decode this many streams together (continuous batching)")
           ->capture_default_str();
       app.add_flag("--speculative", o->speculative, "Decode with MTP speculative decoding");
       app.add_option("--draft-max-batch", o->draft_max_batch,
                      "With --speculative: MTP drafts only while at most N streams decode together (0: always)")
           ->capture_default_str();
       app.add_flag("--no-bandwidth", o->no_bw, "Skip the memory bandwidth measurement");
       app.add_flag("--json", o->json, "Print one JSON object");
       return [o] { return run_bench(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
