#include "model/weights.h"

#include <fmt/format.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "model/weight_table.h"

namespace dsv3 {

namespace {

WeightView view_of(const Checkpoint& ck, const WeightSpec& w, int64_t int4_group) {
  const TensorRef* r = ck.find(w.name);
  WeightView v;
  if (!r) {
    // compressed-tensors pack-quantized (validate_checkpoint checked the shapes and dtypes).
    const TensorRef* p = ck.find(int4_packed_name(w.name));
    const TensorRef* s = ck.find(int4_scale_name(w.name));
    if (!p || !s) fail("{}: tensor '{}' missing", ck.dir(), w.name);
    v.data = p->data();
    v.dtype = DType::I4;
    v.rows = w.shape[0];
    v.cols = w.shape[1];
    v.group = static_cast<int32_t>(int4_group);
    v.group_scale = s->data();
    v.group_scale_dtype = s->info->dtype;
    return v;
  }
  v.data = r->data();
  v.dtype = r->info->dtype;
  v.rows = w.shape[0];
  v.cols = w.shape.ndim > 1 ? w.shape[1] : 1;
  if (v.dtype == DType::F8_E4M3) {
    const TensorRef* s = ck.find(scale_inv_name(w.name));
    if (!s) fail("{}: '{}' missing", ck.dir(), scale_inv_name(w.name));
    v.scale_inv = reinterpret_cast<const float*>(s->data());
  }
  return v;
}

// "model.layers.3.mlp.experts.7.up_proj.weight" -> "mlp.experts.7.up_proj.weight"
std::string local_name(const std::string& name, int layer) {
  const std::string p = fmt::format("model.layers.{}.", layer);
  return name.compare(0, p.size(), p) == 0 ? name.substr(p.size()) : name;
}

}  // namespace

ModelWeights bind_weights(const ModelConfig& cfg, const Checkpoint& ck) {
  return bind_weights(cfg, [&](const WeightSpec& w) { return view_of(ck, w, cfg.quantization.int4_group); }, ck.dir());
}

ModelWeights bind_weights(const ModelConfig& cfg, const std::function<WeightView(const WeightSpec&)>& view,
                          const std::string& what) {
  ModelWeights m;
  m.layers.resize(static_cast<size_t>(cfg.total_layers()));
  for (int64_t i = 0; i < cfg.total_layers(); ++i) {
    LayerWeights& L = m.layers[static_cast<size_t>(i)];
    L.moe = cfg.is_moe_layer(i);
    if (L.moe) L.moe_w.experts.resize(static_cast<size_t>(cfg.n_routed_experts));
  }
  for_each_weight(cfg, [&](const WeightSpec& w) {
    const WeightView v = view(w);
    if (w.layer < 0) {
      if (w.name == "model.embed_tokens.weight") m.embed = v;
      else if (w.name == "model.norm.weight") m.norm = v;
      else if (w.name == "lm_head.weight") m.lm_head = v;
      return;
    }
    LayerWeights& L = m.layers[static_cast<size_t>(w.layer)];
    const std::string n = local_name(w.name, w.layer);
    if (w.expert >= 0) {
      MlpWeights& e = L.moe_w.experts[static_cast<size_t>(w.expert)];
      if (n.ends_with("gate_proj.weight")) e.gate = v;
      else if (n.ends_with("up_proj.weight")) e.up = v;
      else e.down = v;
      return;
    }
    static const std::pair<const char*, WeightView LayerWeights::*> kTop[] = {
        {"input_layernorm.weight", &LayerWeights::input_norm},
        {"post_attention_layernorm.weight", &LayerWeights::post_norm}};
    for (const auto& [k, f] : kTop)
      if (n == k) { L.*f = v; return; }
    static const std::pair<const char*, WeightView AttentionWeights::*> kAttn[] = {
        {"self_attn.q_a_proj.weight", &AttentionWeights::q_a},
        {"self_attn.q_a_layernorm.weight", &AttentionWeights::q_a_norm},
        {"self_attn.q_b_proj.weight", &AttentionWeights::q_b},
        {"self_attn.q_proj.weight", &AttentionWeights::q},
        {"self_attn.kv_a_proj_with_mqa.weight", &AttentionWeights::kv_a},
        {"self_attn.kv_a_layernorm.weight", &AttentionWeights::kv_a_norm},
        {"self_attn.kv_b_proj.weight", &AttentionWeights::kv_b},
        {"self_attn.o_proj.weight", &AttentionWeights::o}};
    for (const auto& [k, f] : kAttn)
      if (n == k) { L.attn.*f = v; return; }
    static const std::pair<const char*, WeightView MlpWeights::*> kMlp[] = {
        {"gate_proj.weight", &MlpWeights::gate}, {"up_proj.weight", &MlpWeights::up},
        {"down_proj.weight", &MlpWeights::down}};
    for (const auto& [k, f] : kMlp) {
      if (n == std::string("mlp.") + k) { L.mlp.*f = v; return; }
      if (n == std::string("mlp.shared_experts.") + k) { L.moe_w.shared.*f = v; L.moe_w.has_shared = true; return; }
    }
    if (n == "mlp.gate.weight") { L.moe_w.router = v; return; }
    if (n == "mlp.gate.e_score_correction_bias") {
      // The bias is used as float32; BF16/F16 files are rare and are rejected here.
      if (v.dtype != DType::F32) fail("{}: '{}' must be F32 (got {})", what, w.name, dtype_name(v.dtype));
      L.moe_w.bias = static_cast<const float*>(v.data);
      return;
    }
    static const std::pair<const char*, WeightView MtpWeights::*> kMtp[] = {
        {"embed_tokens.weight", &MtpWeights::embed}, {"enorm.weight", &MtpWeights::enorm},
        {"hnorm.weight", &MtpWeights::hnorm}, {"eh_proj.weight", &MtpWeights::eh_proj},
        {"shared_head.norm.weight", &MtpWeights::head_norm}, {"shared_head.head.weight", &MtpWeights::head}};
    for (const auto& [k, f] : kMtp)
      if (n == k) { L.mtp.*f = v; return; }
    fail("bind_weights: no slot for tensor '{}'", w.name);  // the table and this binder disagree
  });
  if (cfg.tie_word_embeddings) m.lm_head = m.embed;
  return m;
}

}  // namespace dsv3
