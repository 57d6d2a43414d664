// Trainer checkpoints. OUT always holds the latest complete checkpoint: a Hugging Face
// directory (config.json, sharded safetensors, index, tokenizer files) plus trainer_state/
// (state.json, the optimizer moments and, unless the weights are saved in float32, the float32
// master weights). A new checkpoint is written beside OUT as OUT.partial and swapped in with one
// atomic rename, so a killed run leaves the previous checkpoint whole.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/params.h"

namespace dsv3 {

struct MomentState {
  std::string dtype = "f32";  // f32 | bf16
  std::vector<float> m, v;    // [params] when f32
  std::vector<uint16_t> mb, vb;  // [params] when bf16
  bool empty() const { return m.empty() && mb.empty(); }
};

struct SaveRequest {
  std::string out_dir, save_dtype, tokenizer_dir;
  const Params* params = nullptr;
  const MomentState* moments = nullptr;
  nlohmann::json state;  // step, options, data position ...
};

void save_checkpoint(const SaveRequest& r);

// Reads OUT/trainer_state/state.json; null when OUT has no complete checkpoint.
nlohmann::json read_trainer_state(const std::string& out_dir);
// Restores master weights and moments written by save_checkpoint into p / mom.
void load_trainer_checkpoint(const std::string& out_dir, Params& p, MomentState& mom);

// Writes tensors of `p`'s layout from `buf` (params or gradients) as one F32 safetensors file.
void write_f32_tensors(const std::string& path, const Params& p, const float* buf, const std::string& prefix = "");

}  // namespace dsv3
