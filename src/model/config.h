// config.json of a DeepSeek-V3-family checkpoint (spec section 1), with the defaults of
// transformers' DeepseekV3Config / DeepseekV2Config for fields a file leaves out.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3 {

struct RopeScaling {
  std::string type;  // "" (none) or "yarn"
  double factor = 1.0;
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 1.0, mscale_all_dim = 0.0;
  int64_t original_max_position_embeddings = 4096;
  bool truncate = true;  // transformers: floor/ceil the YaRN correction range
};

struct QuantizationConfig {
  bool fp8 = false;  // quant_method fp8, fmt e4m3, weight_block_size [128, 128]
  std::string activation_scheme;
  // quant_method compressed-tensors, format pack-quantized: symmetric int4 weights (W4A16) in
  // groups of int4_group columns; 0 when absent. Which Linears are INT4 is read per tensor
  // (`X.weight_packed` instead of `X.weight`); int4_ignore is kept only to write it back.
  int64_t int4_group = 0;
  std::vector<std::string> int4_ignore;
  std::string name() const;  // "fp8-e4m3-block128", "int4-group32", or "none"
};

// The quantization_config block of a compressed-tensors W4A16 pack-quantized checkpoint.
std::string compressed_tensors_config_json(int64_t group, const std::vector<std::string>& ignore);

enum class Scoring { kSigmoid, kSoftmax };
enum class TopkMethod { kNoauxTc, kGreedy, kGroupLimitedGreedy };

struct ModelConfig {
  std::string model_type = "deepseek_v3";
  std::string architecture = "DeepseekV3ForCausalLM";
  int64_t vocab_size = 129280;
  int64_t hidden_size = 7168;
  int64_t intermediate_size = 18432;      // dense FFN
  int64_t moe_intermediate_size = 2048;   // one routed expert
  int64_t num_hidden_layers = 61;
  int64_t num_nextn_predict_layers = 0;   // MTP modules after the main layers
  int64_t num_attention_heads = 128;
  int64_t num_key_value_heads = 128;
  int64_t n_shared_experts = 1;
  int64_t n_routed_experts = 256;
  double routed_scaling_factor = 2.5;
  int64_t kv_lora_rank = 512;
  int64_t q_lora_rank = 1536;             // 0: no q LoRA, a single q_proj
  int64_t qk_rope_head_dim = 64;
  int64_t v_head_dim = 128;
  int64_t qk_nope_head_dim = 128;
  TopkMethod topk_method = TopkMethod::kNoauxTc;
  int64_t n_group = 8;
  int64_t topk_group = 4;
  int64_t num_experts_per_tok = 8;
  int64_t first_k_dense_replace = 3;
  int64_t moe_layer_freq = 1;
  bool norm_topk_prob = true;
  Scoring scoring_func = Scoring::kSigmoid;
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 4096;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool attention_bias = false;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 0;
  std::vector<int64_t> eos_token_ids{1};
  QuantizationConfig quantization;

  // Parses and validates; `what` names the file in errors. Throws dsv3::Error.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& what = "config.json");
  static ModelConfig load(const std::string& path_or_dir);
  void validate(const std::string& what) const;
  // config.json with every field, as HF writes it (quantization_config only when fp8).
  nlohmann::json to_json() const;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t kv_cache_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // 576 for V3
  int64_t total_layers() const { return num_hidden_layers + num_nextn_predict_layers; }
  // Layer i (MTP layers included) has a DeepSeekMoE FFN rather than a dense one.
  bool is_moe_layer(int64_t i) const {
    return n_routed_experts > 0 && i >= first_k_dense_replace && i % moe_layer_freq == 0;
  }
  bool is_mtp_layer(int64_t i) const { return i >= num_hidden_layers; }
  // YaRN attention scale: 0.1 * mscale_all_dim * ln(factor) + 1 when factor > 1, else 1.
  double yarn_mscale(double m) const;
  // Softmax scale of MLA: (nope+rope)^-0.5 * mscale^2 (spec section 3).
  double softmax_scale() const;
};

}  // namespace dsv3
