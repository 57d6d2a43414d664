#include "model/config.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/mapped_file.h"

namespace dsv3 {

namespace {

using json = nlohmann::json;

// Reads field `key` into `out` when present and not null; a wrong JSON type is an error.
template <typename T>
void get(const json& j, const char* key, T& out, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    if constexpr (std::is_same_v<T, int64_t>) {
      if (!it->is_number_integer() && !(it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()))
        throw std::runtime_error("expected an integer");
      out = it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
    } else if constexpr (std::is_same_v<T, double>) {
      if (!it->is_number()) throw std::runtime_error("expected a number");
      out = it->get<double>();
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!it->is_boolean()) throw std::runtime_error("expected true or false");
      out = it->get<bool>();
    } else {
      if (!it->is_string()) throw std::runtime_error("expected a string");
      out = it->get<std::string>();
    }
  } catch (const std::exception& e) {
    // Arrays/objects are named by type: dump() recurses and may be huge or span lines.
    fail("{}: field \"{}\": {} (got {})", what, key, e.what(), it->is_structured() ? std::string(it->type_name()) : it->dump());
  }
}

// compressed-tensors quantization_config (vLLM / llm-compressor): only W4A16 pack-quantized,
// symmetric int4 with one group size; anything else is named and refused.
void parse_compressed_tensors(const json& q, QuantizationConfig& out, const std::string& what) {
  std::string format;
  get(q, "format", format, what);
  auto groups = q.find("config_groups");
  if (groups == q.end() || !groups->is_object() || groups->empty())
    fail("{}: compressed-tensors quantization_config has no config_groups", what);
  for (const auto& [gname, g] : groups->items()) {
    const std::string where = fmt::format("{}: quantization_config.config_groups.{}", what, gname);
    std::string gformat = format;
    if (auto f = g.find("format"); f != g.end() && f->is_string()) gformat = f->get<std::string>();
    if (gformat != "pack-quantized")
      fail("{}: format '{}' is not supported (only pack-quantized int4)", where, gformat);
    if (auto a = g.find("input_activations"); a != g.end() && !a->is_null())
      fail("{}: activation quantization is not supported (only weight-only W4A16)", where);
    auto w = g.find("weights");
    if (w == g.end() || !w->is_object()) fail("{}: no weights scheme", where);
    int64_t bits = 0, group = 0;
    std::string type, strategy;
    bool symmetric = false;
    get(*w, "num_bits", bits, where);
    get(*w, "type", type, where);
    get(*w, "strategy", strategy, where);
    get(*w, "symmetric", symmetric, where);
    if (bits != 4 || type != "int") fail("{}: {}-bit {} weights are not supported (only 4-bit int)", where, bits, type);
    if (!symmetric) fail("{}: asymmetric weights (zero points) are not supported (only symmetric)", where);
    if (strategy != "group") fail("{}: strategy '{}' is not supported (only group)", where, strategy);
    get(*w, "group_size", group, where);
    if (group <= 0 || group % 2 != 0) fail("{}: group_size {} must be a positive even number", where, group);
    if (auto ao = w->find("actorder"); ao != w->end() && ao->is_string() && ao->get<std::string>() == "group")
      fail("{}: actorder 'group' (weight_g_idx) is not supported", where);
    if (out.int4_group != 0 && out.int4_group != group)
      fail("{}: config groups with different group sizes ({} and {}) are not supported", what, out.int4_group, group);
    out.int4_group = group;
  }
  if (auto ig = q.find("ignore"); ig != q.end() && ig->is_array())
    for (const auto& e : *ig)
      if (e.is_string()) out.int4_ignore.push_back(e.get<std::string>());
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& what) {
  if (!j.is_object()) fail("{}: not a JSON object", what);
  ModelConfig c;
  get(j, "model_type", c.model_type, what);
  std::string arch;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    arch = (*it)[0].get<std::string>();
  const bool v2 = c.model_type == "deepseek_v2" || arch == "DeepseekV2ForCausalLM";
  const bool v3 = c.model_type == "deepseek_v3" || c.model_type == "kimi_k2" || arch == "DeepseekV3ForCausalLM";
  if (!v2 && !v3)
    fail("{}: unsupported model_type '{}' / architecture '{}' (dsv3 runs DeepseekV3ForCausalLM and DeepseekV2ForCausalLM)",
         what, c.model_type, arch.empty() ? "none" : arch);
  c.architecture = arch.empty() ? (v2 ? "DeepseekV2ForCausalLM" : "DeepseekV3ForCausalLM") : arch;
  if (v2) {  // DeepseekV2Config defaults where they differ from V3
    c.vocab_size = 102400, c.hidden_size = 5120, c.intermediate_size = 12288, c.moe_intermediate_size = 1407;
    c.num_hidden_layers = 30, c.num_attention_heads = 32, c.num_key_value_heads = 32;
    c.n_shared_experts = 0, c.n_routed_experts = 0, c.routed_scaling_factor = 1.0;
    c.topk_method = TopkMethod::kGreedy, c.n_group = 1, c.topk_group = 1, c.num_experts_per_tok = 1;
    c.first_k_dense_replace = 0, c.norm_topk_prob = false, c.scoring_func = Scoring::kSoftmax;
    c.max_position_embeddings = 2048;
  }
  get(j, "vocab_size", c.vocab_size, what);
  get(j, "hidden_size", c.hidden_size, what);
  get(j, "intermediate_size", c.intermediate_size, what);
  get(j, "moe_intermediate_size", c.moe_intermediate_size, what);
  get(j, "num_hidden_layers", c.num_hidden_layers, what);
  get(j, "num_nextn_predict_layers", c.num_nextn_predict_layers, what);
  get(j, "num_attention_heads", c.num_attention_heads, what);
  c.num_key_value_heads = c.num_attention_heads;
  get(j, "num_key_value_heads", c.num_key_value_heads, what);
  get(j, "n_shared_experts", c.n_shared_experts, what);
  get(j, "n_routed_experts", c.n_routed_experts, what);
  get(j, "routed_scaling_factor", c.routed_scaling_factor, what);
  get(j, "kv_lora_rank", c.kv_lora_rank, what);
  if (auto it = j.find("q_lora_rank"); it != j.end() && it->is_null()) c.q_lora_rank = 0;
  else get(j, "q_lora_rank", c.q_lora_rank, what);
  get(j, "qk_rope_head_dim", c.qk_rope_head_dim, what);
  get(j, "v_head_dim", c.v_head_dim, what);
  get(j, "qk_nope_head_dim", c.qk_nope_head_dim, what);
  std::string s;
  if (j.contains("topk_method") && !j["topk_method"].is_null()) {
    get(j, "topk_method", s, what);
    if (s == "noaux_tc") c.topk_method = TopkMethod::kNoauxTc;
    else if (s == "greedy") c.topk_method = TopkMethod::kGreedy;
    else if (s == "group_limited_greedy") c.topk_method = TopkMethod::kGroupLimitedGreedy;
    else fail("{}: unsupported topk_method '{}' (noaux_tc, greedy, group_limited_greedy)", what, s);
  }
  get(j, "n_group", c.n_group, what);
  get(j, "topk_group", c.topk_group, what);
  get(j, "num_experts_per_tok", c.num_experts_per_tok, what);
  get(j, "first_k_dense_replace", c.first_k_dense_replace, what);
  get(j, "moe_layer_freq", c.moe_layer_freq, what);
  get(j, "norm_topk_prob", c.norm_topk_prob, what);
  if (j.contains("scoring_func") && !j["scoring_func"].is_null()) {
    get(j, "scoring_func", s, what);
    if (s == "sigmoid") c.scoring_func = Scoring::kSigmoid;
    else if (s == "softmax") c.scoring_func = Scoring::kSoftmax;
    else fail("{}: unsupported scoring_func '{}' (sigmoid, softmax)", what, s);
  }
  get(j, "hidden_act", c.hidden_act, what);
  get(j, "max_position_embeddings", c.max_position_embeddings, what);
  get(j, "rms_norm_eps", c.rms_norm_eps, what);
  get(j, "rope_theta", c.rope_theta, what);
  get(j, "attention_bias", c.attention_bias, what);
  get(j, "tie_word_embeddings", c.tie_word_embeddings, what);
  get(j, "bos_token_id", c.bos_token_id, what);
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    c.eos_token_ids.clear();
    if (it->is_array()) {
      for (const auto& e : *it) {
        if (!e.is_number_integer()) fail("{}: field \"eos_token_id\": expected integers", what);
        c.eos_token_ids.push_back(e.get<int64_t>());
      }
    } else if (it->is_number_integer()) {
      c.eos_token_ids.push_back(it->get<int64_t>());
    } else {
      fail("{}: field \"eos_token_id\": expected an integer or a list", what);
    }
  }
  // rope_scaling (transformers <5) or rope_parameters (transformers 5).
  const json* rs = nullptr;
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) rs = &*it;
  else if (auto it2 = j.find("rope_parameters"); it2 != j.end() && !it2->is_null()) rs = &*it2;
  if (rs) {
    if (!rs->is_object()) fail("{}: rope_scaling must be an object or null", what);
    std::string type;
    get(*rs, "type", type, what);
    get(*rs, "rope_type", type, what);
    if (type == "yarn") {
      c.rope_scaling.type = "yarn";
      get(*rs, "factor", c.rope_scaling.factor, what);
      get(*rs, "beta_fast", c.rope_scaling.beta_fast, what);
      get(*rs, "beta_slow", c.rope_scaling.beta_slow, what);
      get(*rs, "mscale", c.rope_scaling.mscale, what);
      get(*rs, "mscale_all_dim", c.rope_scaling.mscale_all_dim, what);
      c.rope_scaling.original_max_position_embeddings = c.max_position_embeddings;
      get(*rs, "original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings, what);
      get(*rs, "truncate", c.rope_scaling.truncate, what);
      if (auto rt = rs->find("rope_theta"); rt != rs->end() && rt->is_number()) c.rope_theta = rt->get<double>();
    } else if (type == "default" || type.empty()) {
      if (auto rt = rs->find("rope_theta"); rt != rs->end() && rt->is_number()) c.rope_theta = rt->get<double>();
    } else {
      fail("{}: unsupported rope_scaling type '{}' (yarn or none)", what, type);
    }
  }
  if (auto it = j.find("quantization_config"); it != j.end() && !it->is_null()) {
    const json& q = *it;
    if (!q.is_object()) fail("{}: quantization_config must be an object", what);
    std::string method, fmtname;
    get(q, "quant_method", method, what);
    if (method == "compressed-tensors") {
      parse_compressed_tensors(q, c.quantization, what);
      c.validate(what);
      return c;
    }
    get(q, "fmt", fmtname, what);
    get(q, "activation_scheme", c.quantization.activation_scheme, what);
    if (method != "fp8") fail("{}: unsupported quantization_config.quant_method '{}' (fp8 or compressed-tensors)", what, method);
    if (!fmtname.empty() && fmtname != "e4m3") fail("{}: unsupported fp8 format '{}' (only e4m3)", what, fmtname);
    if (auto b = q.find("weight_block_size"); b != q.end()) {
      if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() || (*b)[0] != 128 || (*b)[1] != 128)
        fail("{}: unsupported weight_block_size (only [128, 128])", what);
    }
    c.quantization.fp8 = true;
  }
  c.validate(what);
  return c;
}

std::string compressed_tensors_config_json(int64_t group, const std::vector<std::string>& ignore) {
  const json weights = {{"num_bits", 4}, {"type", "int"}, {"symmetric", true}, {"strategy", "group"},
                        {"group_size", group}, {"dynamic", false}, {"actorder", nullptr}, {"observer", "minmax"}};
  const json q = {
      {"quant_method", "compressed-tensors"}, {"format", "pack-quantized"}, {"quantization_status", "compressed"},
      {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", nullptr},
                                      {"output_activations", nullptr}, {"format", "pack-quantized"}}}}},
      {"ignore", ignore}, {"kv_cache_scheme", nullptr}};
  return q.dump();
}

std::string QuantizationConfig::name() const {
  if (int4_group > 0) return fmt::format("int4-group{}", int4_group);
  return fp8 ? "fp8-e4m3-block128" : "none";
}

ModelConfig ModelConfig::load(const std::string& path_or_dir) {
  std::string path = path_or_dir;
  if (std::filesystem::is_directory(path)) path = (std::filesystem::path(path) / "config.json").string();
  json j;
  try {
    j = json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    fail("{}: malformed JSON: {}", path, e.what());
  }
  return from_json(j, path);
}

void ModelConfig::validate(const std::string& what) const {
  auto pos = [&](int64_t v, const char* name) {
    if (v <= 0) fail("{}: {} must be positive (got {})", what, name, v);
  };
  pos(vocab_size, "vocab_size");
  pos(hidden_size, "hidden_size");
  pos(num_hidden_layers, "num_hidden_layers");
  pos(num_attention_heads, "num_attention_heads");
  pos(kv_lora_rank, "kv_lora_rank");
  pos(qk_nope_head_dim, "qk_nope_head_dim");
  pos(qk_rope_head_dim, "qk_rope_head_dim");
  pos(v_head_dim, "v_head_dim");
  pos(max_position_embeddings, "max_position_embeddings");
  if (q_lora_rank < 0) fail("{}: q_lora_rank must be positive or null", what);
  if (num_nextn_predict_layers < 0) fail("{}: num_nextn_predict_layers must be >= 0", what);
  if (qk_rope_head_dim % 2) fail("{}: qk_rope_head_dim must be even (got {})", what, qk_rope_head_dim);
  if (hidden_act != "silu") fail("{}: unsupported hidden_act '{}' (only silu)", what, hidden_act);
  if (attention_bias) fail("{}: attention_bias true is not supported by DeepSeek-V3 checkpoints", what);
  if (num_key_value_heads != num_attention_heads)
    fail("{}: num_key_value_heads ({}) must equal num_attention_heads ({}) for MLA", what, num_key_value_heads, num_attention_heads);
  if (first_k_dense_replace < 0) fail("{}: first_k_dense_replace must be >= 0", what);
  if (moe_layer_freq <= 0) fail("{}: moe_layer_freq must be positive", what);
  bool any_dense = false, any_moe = false;
  for (int64_t i = 0; i < total_layers(); ++i) (is_moe_layer(i) ? any_moe : any_dense) = true;
  if (any_dense) pos(intermediate_size, "intermediate_size");
  if (n_routed_experts < 0) fail("{}: n_routed_experts must be >= 0", what);
  if (any_moe) {
    pos(moe_intermediate_size, "moe_intermediate_size");
    pos(num_experts_per_tok, "num_experts_per_tok");
    pos(n_group, "n_group");
    pos(topk_group, "topk_group");
    if (n_shared_experts < 0) fail("{}: n_shared_experts must be >= 0", what);
    if (n_routed_experts % n_group)
      fail("{}: n_routed_experts ({}) must be divisible by n_group ({})", what, n_routed_experts, n_group);
    if (topk_group > n_group) fail("{}: topk_group ({}) must be <= n_group ({})", what, topk_group, n_group);
    const bool grouped = topk_method != TopkMethod::kGreedy;
    const int64_t reachable = grouped ? topk_group * (n_routed_experts / n_group) : n_routed_experts;
    if (num_experts_per_tok > reachable)
      fail("{}: num_experts_per_tok ({}) exceeds the {} experts reachable in topk_group groups", what,
           num_experts_per_tok, reachable);
    if (topk_method == TopkMethod::kNoauxTc && n_routed_experts / n_group < 2)
      fail("{}: noaux_tc routing needs at least 2 experts per group (n_routed_experts {}, n_group {})", what,
           n_routed_experts, n_group);
  }
  if (rms_norm_eps <= 0) fail("{}: rms_norm_eps must be positive", what);
  if (rope_theta <= 0) fail("{}: rope_theta must be positive", what);
  if (rope_scaling.type == "yarn") {
    if (rope_scaling.factor <= 0) fail("{}: rope_scaling.factor must be positive", what);
    if (rope_scaling.original_max_position_embeddings <= 0)
      fail("{}: rope_scaling.original_max_position_embeddings must be positive", what);
  }
  for (int64_t e : eos_token_ids)
    if (e < 0 || e >= vocab_size) fail("{}: eos_token_id {} outside the vocabulary of {}", what, e, vocab_size);
}

json ModelConfig::to_json() const {
  json j;
  j["architectures"] = {architecture};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_nextn_predict_layers"] = num_nextn_predict_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["n_shared_experts"] = n_shared_experts;
  j["n_routed_experts"] = n_routed_experts;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["kv_lora_rank"] = kv_lora_rank;
  j["q_lora_rank"] = q_lora_rank > 0 ? json(q_lora_rank) : json(nullptr);
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["v_head_dim"] = v_head_dim;
  j["qk_nope_head_dim"] = qk_nope_head_dim;
  j["topk_method"] = topk_method == TopkMethod::kNoauxTc ? "noaux_tc"
                     : topk_method == TopkMethod::kGreedy ? "greedy" : "group_limited_greedy";
  j["n_group"] = n_group;
  j["topk_group"] = topk_group;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["first_k_dense_replace"] = first_k_dense_replace;
  j["moe_layer_freq"] = moe_layer_freq;
  j["norm_topk_prob"] = norm_topk_prob;
  j["scoring_func"] = scoring_func == Scoring::kSigmoid ? "sigmoid" : "softmax";
  j["hidden_act"] = hidden_act;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type == "yarn") {
    j["rope_scaling"] = {{"type", "yarn"}, {"factor", rope_scaling.factor}, {"beta_fast", rope_scaling.beta_fast},
                         {"beta_slow", rope_scaling.beta_slow}, {"mscale", rope_scaling.mscale},
                         {"mscale_all_dim", rope_scaling.mscale_all_dim},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
    if (!rope_scaling.truncate) j["rope_scaling"]["truncate"] = false;
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["attention_bias"] = attention_bias;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  j["torch_dtype"] = "bfloat16";
  if (quantization.int4_group > 0) {
    j["quantization_config"] = json::parse(compressed_tensors_config_json(quantization.int4_group, quantization.int4_ignore));
  } else if (quantization.fp8)
    j["quantization_config"] = {{"activation_scheme", quantization.activation_scheme.empty() ? "dynamic" : quantization.activation_scheme},
                                {"fmt", "e4m3"}, {"quant_method", "fp8"}, {"weight_block_size", {128, 128}}};
  return j;
}

double ModelConfig::yarn_mscale(double m) const {
  const double f = rope_scaling.factor;
  return f <= 1.0 ? 1.0 : 0.1 * m * std::log(f) + 1.0;
}

double ModelConfig::softmax_scale() const {
  double s = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  // transformers: only when mscale_all_dim is set (non-zero).
  if (rope_scaling.type == "yarn" && rope_scaling.mscale_all_dim != 0.0) {
    const double m = yarn_mscale(rope_scaling.mscale_all_dim);
    s *= m * m;
  }
  return s;
}

}  // namespace dsv3
