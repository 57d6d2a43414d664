#include "train/params.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/fp8_block.h"
#include "core/log.h"
#include "core/random.h"
#include "io/checkpoint.h"
#include "ops/ops.h"

namespace dsv3 {

Params::Params(const ModelConfig& cfg, bool share_mtp) : cfg_(cfg) {
  const std::string main_head = cfg.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  int64_t off = 0;
  for_each_weight(cfg_, [&](const WeightSpec& w) {
    ParamTensor t;
    t.spec = w;
    t.numel = w.shape.numel();
    if (share_mtp && cfg_.is_mtp_layer(w.layer) && (w.kind == WeightKind::kEmbedding || w.kind == WeightKind::kHead)) {
      t.shares = w.kind == WeightKind::kEmbedding ? "model.embed_tokens.weight" : main_head;
      t.trainable = t.decay = false;
      tensors_.push_back(t);  // offset below: lm_head comes after the MTP layers in the table
      return;
    }
    t.offset = off;
    t.trainable = w.kind != WeightKind::kBias;
    t.decay = w.shape.ndim == 2 && w.kind != WeightKind::kNorm;
    off += (t.numel + 15) / 16 * 16;  // 64-byte aligned tensors
    tensors_.push_back(t);
  });
  for (ParamTensor& t : tensors_)
    if (!t.shares.empty()) t.offset = find(t.shares)->offset;
  data_.assign(static_cast<size_t>(off), 0.0f);
  grad_.assign(static_cast<size_t>(off), 0.0f);
  auto binder = [&](std::vector<float>& buf) {
    return [this, &buf](const WeightSpec& w) {
      const ParamTensor* t = find(w.name);
      WeightView v;
      v.data = buf.data() + t->offset;
      v.dtype = DType::F32;
      v.rows = w.shape[0];
      v.cols = w.shape.ndim > 1 ? w.shape[1] : 1;
      v.nan_state = 1;  // float32 has no FP8 NaN codes to scan for
      return v;
    };
  };
  w_ = bind_weights(cfg_, binder(data_), "parameters");
  g_ = bind_weights(cfg_, binder(grad_), "gradients");
}

const ParamTensor* Params::find(const std::string& name) const {
  for (const ParamTensor& t : tensors_)
    if (t.spec.name == name) return &t;
  return nullptr;
}

void Params::zero_grad() { std::fill(grad_.begin(), grad_.end(), 0.0f); }

void Params::freeze_main() {
  for (ParamTensor& t : tensors_)
    if (!cfg_.is_mtp_layer(t.spec.layer)) t.trainable = false;
}

int64_t Params::trainable_count() const {
  int64_t n = 0;
  for (const ParamTensor& t : tensors_)
    if (t.trainable) n += t.numel;
  return n;
}

void Params::init_random(uint64_t seed, float std) {
  uint64_t index = 0;
  for (const ParamTensor& t : tensors_) {
    // Counted for shared tensors too, so every other tensor's init is the same either way.
    const uint64_t key = splitmix64(seed * 0x9e3779b97f4a7c15ull + (++index));
    if (!t.shares.empty()) continue;
    float* p = data_.data() + t.offset;
    const WeightKind k = t.spec.kind;
    if (k == WeightKind::kNorm || k == WeightKind::kBias) {
      std::fill(p, p + t.numel, k == WeightKind::kNorm ? 1.0f : 0.0f);
      continue;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < t.numel; ++i) p[i] = std * normal_at(key, static_cast<uint64_t>(i));
  }
}

void Params::load(const Checkpoint& ck) {
  bool warned = false;
  for (const ParamTensor& t : tensors_) {
    const TensorRef* r = ck.find(t.spec.name);
    if (!r) fail("{}: tensor '{}' missing", ck.dir(), t.spec.name);
    if (!t.shares.empty()) {
      const TensorRef* m = ck.find(t.shares);
      const bool same = m && m->info->dtype == r->info->dtype && m->info->nbytes() == r->info->nbytes() &&
                        std::memcmp(m->data(), r->data(), r->info->nbytes()) == 0;
      if (!same && !warned)
        log_warn("{}: '{}' differs from '{}'; training shares the main model's (--untie-mtp keeps them apart)",
                 ck.dir(), t.spec.name, t.shares);
      warned = warned || !same;
      continue;
    }
    float* dst = data_.data() + t.offset;
    if (r->info->dtype == DType::F8_E4M3) {
      const TensorRef* s = ck.find(scale_inv_name(t.spec.name));
      if (!s) fail("{}: '{}' missing", ck.dir(), scale_inv_name(t.spec.name));
      dequantize_fp8_rows(r->data(), reinterpret_cast<const float*>(s->data()), t.spec.shape[1], 0, t.spec.shape[0],
                          dst);
    } else {
      to_f32(r->info->dtype, r->data(), dst, static_cast<size_t>(t.numel));
    }
  }
}

}  // namespace dsv3
