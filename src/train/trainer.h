// `dsv3 train`: the training loop with DeepSeek-V3's recipe (spec 9) over TrainGraph: packed
// sequences from a token data directory, AdamW (or plain SGD for tests) with warmup, constant
// and cosine phases, global-norm clipping, auxiliary-loss-free bias updates, validation, and
// checkpoints that are always complete Hugging Face directories.
#pragma once
#include <cstdint>
#include <string>

namespace dsv3 {

struct TrainOptions {
  std::string config_path;  // --config: train from scratch (V3 init)
  std::string init_dir;     // --init: start from a checkpoint dsv3 loads
  std::string data_dir;     // --data: made by `dsv3 data`
  std::string out_dir;      // --out
  std::string tokenizer_dir;  // tokenizer files copied into checkpoints ("" : from --init if there)
  std::string log_path;     // JSON lines appended here as well ("" : none)
  int64_t steps = 1000, batch = 8, seq_len = 256;
  double lr = 3e-4, min_lr = -1;  // min_lr < 0: lr / 10
  int64_t warmup = 0;             // linear warmup steps
  int64_t decay_start = -1;       // cosine decay from this step (-1: never) ...
  int64_t decay_steps = 0;        // ... over this many steps (0: until --steps), then min_lr
  std::string optimizer = "adamw";  // adamw | sgd
  double beta1 = 0.9, beta2 = 0.95, adam_eps = 1e-8, weight_decay = 0.1, clip = 1.0;
  std::string moments = "f32";    // f32 | bf16
  std::string precision = "fp32"; // GEMM inputs of the block Linears: fp32 | bf16 | fp8 (ops/lowp.h)
  double mtp_weight = 0.3, balance_alpha = 1e-4, bias_update = 1e-3;
  float init_std = 0.006f;
  uint64_t seed = 0;
  int threads = 0;
  int64_t save_every = 0;         // 0: only at the end
  int64_t val_every = 0;          // 0: only at the last step
  int64_t val_seqs = 64;          // validation sequences used (0: all)
  std::string save_dtype = "bf16";  // f32 | bf16 | fp8
  bool resume = false, force = false, json = false, shuffle = true;
  bool share_mtp = true;          // MTP embed_tokens / shared_head.head are the main ones (spec 6)
  bool mtp_only = false;          // train only the MTP modules; the main model is frozen
  std::string mtp_targets = "data";  // data | main: what the MTP modules learn (graph.h LossWeights)
  bool zero1 = false;             // under mpirun: shard the AdamW moments over the ranks (ZeRO-1)
  std::string dump_grads;         // write the first step's gradients (F32 safetensors) here
};

// Runs training; returns the process exit code. Throws dsv3::Error on bad input.
int run_training(const TrainOptions& opt);

}  // namespace dsv3
