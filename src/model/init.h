// Random checkpoints in the official layout, for tests, benchmarks and the demo.
#pragma once
#include <cstdint>
#include <string>

#include "model/config.h"

namespace dsv3 {

struct InitOptions {
  uint64_t seed = 0;
  bool fp8 = true;                      // FP8 E4M3 block weights where the official checkpoint has them
  uint64_t max_shard_bytes = 2ull << 30;
  std::string tokenizer_dir;            // copy tokenizer.json / tokenizer_config.json from here when set
};

// Writes config.json, shards and the index into `out_dir`, which must not exist yet.
// Values: linear and head weights ~ N(0, 1/in), embeddings ~ N(0, 1), norms 1, router bias 0.
// Deterministic for a seed whatever the thread count.
void init_random_checkpoint(ModelConfig cfg, const std::string& out_dir, const InitOptions& opt);

}  // namespace dsv3
