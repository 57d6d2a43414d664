#include "model/weight_table.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "io/checkpoint.h"

namespace dsv3 {

Shape scale_inv_shape(const Shape& w) {
  return Shape{(w[0] + kFp8Block - 1) / kFp8Block, (w[1] + kFp8Block - 1) / kFp8Block};
}

void for_each_weight(const ModelConfig& c, const std::function<void(const WeightSpec&)>& visit) {
  const int64_t H = c.hidden_size, nh = c.num_attention_heads;
  auto emit = [&](std::string name, Shape s, WeightKind k, int layer = -1, int expert = -1) {
    visit(WeightSpec{std::move(name), s, k, layer, expert});
  };
  emit("model.embed_tokens.weight", {c.vocab_size, H}, WeightKind::kEmbedding);
  for (int64_t i = 0; i < c.total_layers(); ++i) {
    const int L = static_cast<int>(i);
    const std::string p = fmt::format("model.layers.{}.", i);
    if (c.is_mtp_layer(i)) {  // MTP module: its own embedding copy and projections (spec section 6)
      emit(p + "embed_tokens.weight", {c.vocab_size, H}, WeightKind::kEmbedding, L);
      emit(p + "enorm.weight", {H}, WeightKind::kNorm, L);
      emit(p + "hnorm.weight", {H}, WeightKind::kNorm, L);
      emit(p + "eh_proj.weight", {H, 2 * H}, WeightKind::kEhProj, L);
    }
    emit(p + "input_layernorm.weight", {H}, WeightKind::kNorm, L);
    if (c.q_lora_rank > 0) {
      emit(p + "self_attn.q_a_proj.weight", {c.q_lora_rank, H}, WeightKind::kLinear, L);
      emit(p + "self_attn.q_a_layernorm.weight", {c.q_lora_rank}, WeightKind::kNorm, L);
      emit(p + "self_attn.q_b_proj.weight", {nh * c.qk_head_dim(), c.q_lora_rank}, WeightKind::kLinear, L);
    } else {
      emit(p + "self_attn.q_proj.weight", {nh * c.qk_head_dim(), H}, WeightKind::kLinear, L);
    }
    emit(p + "self_attn.kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, H}, WeightKind::kLinear, L);
    emit(p + "self_attn.kv_a_layernorm.weight", {c.kv_lora_rank}, WeightKind::kNorm, L);
    emit(p + "self_attn.kv_b_proj.weight", {nh * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
         WeightKind::kLinear, L);
    emit(p + "self_attn.o_proj.weight", {H, nh * c.v_head_dim}, WeightKind::kLinear, L);
    emit(p + "post_attention_layernorm.weight", {H}, WeightKind::kNorm, L);
    if (!c.is_moe_layer(i)) {
      emit(p + "mlp.gate_proj.weight", {c.intermediate_size, H}, WeightKind::kLinear, L);
      emit(p + "mlp.up_proj.weight", {c.intermediate_size, H}, WeightKind::kLinear, L);
      emit(p + "mlp.down_proj.weight", {H, c.intermediate_size}, WeightKind::kLinear, L);
    } else {
      const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
      emit(p + "mlp.gate.weight", {E, H}, WeightKind::kRouter, L);
      if (c.topk_method == TopkMethod::kNoauxTc) emit(p + "mlp.gate.e_score_correction_bias", {E}, WeightKind::kBias, L);
      for (int64_t e = 0; e < E; ++e) {
        const std::string q = fmt::format("{}mlp.experts.{}.", p, e);
        emit(q + "gate_proj.weight", {I, H}, WeightKind::kLinear, L, static_cast<int>(e));
        emit(q + "up_proj.weight", {I, H}, WeightKind::kLinear, L, static_cast<int>(e));
        emit(q + "down_proj.weight", {H, I}, WeightKind::kLinear, L, static_cast<int>(e));
      }
      if (c.n_shared_experts > 0) {
        const int64_t S = I * c.n_shared_experts;
        emit(p + "mlp.shared_experts.gate_proj.weight", {S, H}, WeightKind::kLinear, L);
        emit(p + "mlp.shared_experts.up_proj.weight", {S, H}, WeightKind::kLinear, L);
        emit(p + "mlp.shared_experts.down_proj.weight", {H, S}, WeightKind::kLinear, L);
      }
    }
    if (c.is_mtp_layer(i)) {
      emit(p + "shared_head.norm.weight", {H}, WeightKind::kNorm, L);
      emit(p + "shared_head.head.weight", {c.vocab_size, H}, WeightKind::kHead, L);
    }
  }
  emit("model.norm.weight", {H}, WeightKind::kNorm);
  if (!c.tie_word_embeddings) emit("lm_head.weight", {c.vocab_size, H}, WeightKind::kHead);
}

std::vector<WeightSpec> weight_table(const ModelConfig& cfg) {
  std::vector<WeightSpec> v;
  for_each_weight(cfg, [&](const WeightSpec& s) { v.push_back(s); });
  return v;
}

namespace {

std::string file_of(const TensorRef& r) { return std::filesystem::path(r.file->path()).filename().string(); }

// One compressed-tensors pack-quantized Linear: X.weight_packed I32 [R, ceil(C/8)],
// X.weight_scale BF16/F16/F32 [R, ceil(C/group)], X.weight_shape I32/I64 = [R, C].
void validate_int4(const ModelConfig& cfg, const Checkpoint& ck, const WeightSpec& w, std::set<std::string>& expected) {
  const std::string pname = int4_packed_name(w.name), sname = int4_scale_name(w.name), shname = int4_shape_name(w.name);
  const TensorRef& p = *ck.find(pname);
  if (!w.fp8_quantized())
    fail("{}: '{}' is int4 but only linear projections may be quantised", file_of(p), pname);
  const int64_t G = cfg.quantization.int4_group;
  if (G <= 0)
    fail("{}: '{}' is int4 but config.json has no compressed-tensors quantization_config with a group_size",
         file_of(p), pname);
  for (const char* bad : {"_zero_point", "_g_idx"})
    if (ck.find(w.name + bad))
      fail("{}: '{}{}' is not supported (only symmetric int4 without activation reordering)", ck.dir(), w.name, bad);
  const int64_t R = w.shape[0], C = w.shape[1];
  if (p.info->dtype != DType::I32 || !(p.info->shape == Shape{R, (C + 7) / 8}))
    fail("{}: '{}' is {} {} but weight {} needs I32 [{}, {}]", file_of(p), pname, dtype_name(p.info->dtype),
         p.info->shape.str(), w.shape.str(), R, (C + 7) / 8);
  const TensorRef* s = ck.find(sname);
  if (!s) fail("{}: int4 tensor '{}' has no '{}'", file_of(p), pname, sname);
  const DType sd = s->info->dtype;
  if (sd != DType::BF16 && sd != DType::F16 && sd != DType::F32)
    fail("{}: '{}' must be BF16, F16 or F32, not {}", file_of(*s), sname, dtype_name(sd));
  if (!(s->info->shape == Shape{R, (C + G - 1) / G}))
    fail("{}: '{}' has shape {} but weight {} in groups of {} needs [{}, {}]", file_of(*s), sname,
         s->info->shape.str(), w.shape.str(), G, R, (C + G - 1) / G);
  expected.insert(pname);
  expected.insert(sname);
  if (const TensorRef* sh = ck.find(shname)) {
    expected.insert(shname);
    const TensorInfo& t = *sh->info;
    int64_t dims[2] = {-1, -1};
    if (t.shape == Shape{2} && t.dtype == DType::I64) std::memcpy(dims, sh->data(), 16);
    if (t.shape == Shape{2} && t.dtype == DType::I32) {
      int32_t d32[2];
      std::memcpy(d32, sh->data(), 8);
      dims[0] = d32[0], dims[1] = d32[1];
    }
    if (dims[0] != R || dims[1] != C)
      fail("{}: '{}' does not hold [{}, {}] (the shape the config implies)", file_of(*sh), shname, R, C);
  }
}

}  // namespace

void validate_checkpoint(const ModelConfig& cfg, const Checkpoint& ck) {
  std::set<std::string> expected;
  for_each_weight(cfg, [&](const WeightSpec& w) {
    expected.insert(w.name);
    const TensorRef* r = ck.find(w.name);
    if (!r && ck.find(int4_packed_name(w.name))) {
      validate_int4(cfg, ck, w, expected);
      return;
    }
    if (!r) fail("{}: tensor '{}' is missing from the checkpoint", ck.dir(), w.name);
    const TensorInfo& t = *r->info;
    if (!(t.shape == w.shape))
      fail("{}: tensor '{}' has shape {} but the config implies {}", file_of(*r), w.name, t.shape.str(), w.shape.str());
    if (!dtype_is_float(t.dtype) || t.dtype == DType::F64)
      fail("{}: tensor '{}' has unsupported dtype {}", file_of(*r), w.name, dtype_name(t.dtype));
    const bool fp8 = t.dtype == DType::F8_E4M3 || t.dtype == DType::F8_E5M2;
    if (fp8 && !(w.fp8_quantized() && t.dtype == DType::F8_E4M3))
      fail("{}: tensor '{}' is {} but only linear projections may be FP8 E4M3", file_of(*r), w.name,
           dtype_name(t.dtype));
    const std::string sname = scale_inv_name(w.name);
    if (fp8) {
      expected.insert(sname);
      const TensorRef* s = ck.find(sname);
      if (!s) fail("{}: FP8 tensor '{}' has no '{}'", file_of(*r), w.name, sname);
      if (s->info->dtype != DType::F32)
        fail("{}: '{}' must be F32, not {}", file_of(*s), sname, dtype_name(s->info->dtype));
      const Shape want = scale_inv_shape(w.shape);
      if (!(s->info->shape == want))
        fail("{}: '{}' has shape {} but weight {} needs {}", file_of(*s), sname, s->info->shape.str(), w.shape.str(),
             want.str());
    }
  });
  int extras = 0;
  for (const auto& r : ck.tensors()) {
    if (expected.count(r.info->name)) continue;
    if (++extras <= 5) log_warn("{}: unexpected tensor '{}' ignored", file_of(r), r.info->name);
  }
  if (extras > 5) log_warn("{}: {} unexpected tensors ignored in all", ck.dir(), extras);
}

ModelFiles::ModelFiles() = default;
ModelFiles::ModelFiles(ModelFiles&&) noexcept = default;
ModelFiles::~ModelFiles() = default;

ModelFiles open_model_files(const std::string& dir) {
  ModelFiles m;
  m.config = ModelConfig::load(dir);
  m.checkpoint = Checkpoint::open(dir);
  validate_checkpoint(m.config, *m.checkpoint);
  return m;
}

CheckpointStats checkpoint_stats(const Checkpoint& ck) {
  CheckpointStats s;
  std::map<std::string, int64_t> dt;
  for (const auto& r : ck.tensors()) {
    const TensorInfo& t = *r.info;
    ++s.tensors;
    s.bytes += static_cast<int64_t>(t.nbytes());
    const std::string& n = t.name;
    // Scales are not parameters; an int4 weight_packed int32 holds 8 of them.
    if (n.ends_with(".weight_packed")) s.total_parameters += 8 * t.shape.numel();
    else if (!n.ends_with("_scale_inv") && !n.ends_with(".weight_scale") && !n.ends_with(".weight_shape"))
      s.total_parameters += t.shape.numel();
    ++dt[dtype_name(t.dtype)];
  }
  s.dtypes.assign(dt.begin(), dt.end());
  return s;
}

int64_t expected_parameters(const ModelConfig& cfg) {
  int64_t n = 0;
  for_each_weight(cfg, [&](const WeightSpec& w) { n += w.shape.numel(); });
  return n;
}

int64_t active_parameters_per_token(const ModelConfig& cfg) {
  int64_t n = 0;
  std::vector<int64_t> expert_params(static_cast<size_t>(cfg.total_layers()), 0);
  for_each_weight(cfg, [&](const WeightSpec& w) {
    if (w.layer >= 0 && cfg.is_mtp_layer(w.layer)) return;
    if (w.expert >= 0) {
      expert_params[static_cast<size_t>(w.layer)] += w.shape.numel();
      return;
    }
    n += w.shape.numel();
  });
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i)
    if (cfg.is_moe_layer(i) && cfg.n_routed_experts > 0)
      n += expert_params[static_cast<size_t>(i)] / cfg.n_routed_experts * cfg.num_experts_per_tok;
  return n;
}

}  // namespace dsv3
