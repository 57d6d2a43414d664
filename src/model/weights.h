// The model's tensors bound to typed views over the mmap'd checkpoint (no copies). Built from
// the weight table, so its names are never repeated here.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/weight_table.h"

namespace dsv3 {

struct AttentionWeights {
  WeightView q_a, q_a_norm, q_b;  // q LoRA: q_a [q_lora, H], q_b [nh*(nope+rope), q_lora]
  WeightView q;                   // without q LoRA: q_proj [nh*(nope+rope), H]
  WeightView kv_a;                // kv_a_proj_with_mqa [kv_lora + rope, H]
  WeightView kv_a_norm;           // [kv_lora]
  WeightView kv_b;                // [nh*(nope+v), kv_lora]
  WeightView o;                   // [H, nh*v]
};

struct MlpWeights {
  WeightView gate, up, down;  // [I, H], [I, H], [H, I]
};

struct MoeWeights {
  WeightView router;            // gate.weight [E, H]
  const float* bias = nullptr;  // e_score_correction_bias [E] (F32) or null
  std::vector<MlpWeights> experts;
  MlpWeights shared;            // rows 0 when there are no shared experts
  bool has_shared = false;
};

struct MtpWeights {
  WeightView embed, enorm, hnorm, eh_proj, head_norm, head;
};

struct LayerWeights {
  WeightView input_norm, post_norm;
  AttentionWeights attn;
  bool moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe_w;
  MtpWeights mtp;  // MTP layers only
};

struct ModelWeights {
  WeightView embed;    // [V, H]
  WeightView norm;     // [H]
  WeightView lm_head;  // [V, H] (the embedding when tied)
  std::vector<LayerWeights> layers;  // main layers then MTP layers
};

// Binds every tensor of the (validated) checkpoint.
ModelWeights bind_weights(const ModelConfig& cfg, const Checkpoint& ck);
// Binds every tensor of the table to the view `view` gives for it (the trainer's float32
// master weights and gradients); `what` names the source in errors.
ModelWeights bind_weights(const ModelConfig& cfg, const std::function<WeightView(const WeightSpec&)>& view,
                          const std::string& what);

}  // namespace dsv3
