// dsv3 init --config CONFIG.json --out DIR: a random checkpoint in the official layout.
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "model/init.h"

namespace dsv3::cli {
namespace {

struct InitOpts {
  std::string config, out, dtype = "fp8", tokenizer;
  uint64_t seed = 0;
  double shard_gb = 2.0;
};

int run_init(const InitOpts& o) {
  if (o.dtype != "fp8" && o.dtype != "bf16") fail("--dtype must be fp8 or bf16 (got '{}')", o.dtype);
  if (o.shard_gb <= 0) fail("--shard-size must be positive");
  ModelConfig cfg = ModelConfig::load(o.config);
  InitOptions opt;
  opt.seed = o.seed;
  opt.fp8 = o.dtype == "fp8";
  opt.max_shard_bytes = static_cast<uint64_t>(o.shard_gb * (1ull << 30));
  opt.tokenizer_dir = o.tokenizer;
  init_random_checkpoint(cfg, o.out, opt);
  log_info("init: wrote random {} checkpoint to {} (weights are random, not a trained model)", o.dtype, o.out);
  return 0;
}

const bool registered = register_command(
    {"init", "Write a random checkpoint (official HF layout) for a config.json: for tests, benchmarks and demos",
     [](CLI::App& app) {
       auto o = std::make_shared<InitOpts>();
       app.add_option("--config", o->config, "config.json describing the model")->required();
       app.add_option("--out", o->out, "Output directory (must not exist)")->required();
       app.add_option("--seed", o->seed, "Random seed")->capture_default_str();
       app.add_option("--dtype", o->dtype, "fp8 (E4M3 blocks + scale_inv, as released) or bf16")->capture_default_str();
       app.add_option("--shard-size", o->shard_gb, "Maximum shard size in GiB")->capture_default_str();
       app.add_option("--tokenizer", o->tokenizer, "Directory whose tokenizer.json/tokenizer_config.json to copy");
       return [o] { return run_init(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
