// The trainer's parameters: float32 master weights for every tensor of the weight table in
// one allocation, a gradient buffer of the same layout, and ModelWeights views of both, so
// the training graph addresses tensors exactly as inference does (one table, one binder).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/weight_table.h"
#include "model/weights.h"

namespace dsv3 {

class Checkpoint;

struct ParamTensor {
  WeightSpec spec;
  int64_t offset = 0;  // elements into data() / grad()
  int64_t numel = 0;
  bool trainable = true;  // the router bias moves by the balancing rule, not by gradients
  bool decay = true;      // AdamW weight decay: matrices only (not norms or biases)
  // Non-empty: this MTP tensor is the named main-model tensor (spec 6: embed_tokens and
  // shared_head.head are the main embedding and lm_head). It has no storage of its own: offset
  // is the main tensor's, so the graph's gradients for both sum in one buffer; it is not
  // trainable (the optimizer steps the main tensor once) and checkpoints write it as a copy.
  std::string shares;
};

class Params {
 public:
  // share_mtp: the MTP modules use the main embedding and output head (V3's recipe); false
  // trains them as separate tensors (how the v1 demo model was trained).
  explicit Params(const ModelConfig& cfg, bool share_mtp = true);
  Params(const Params&) = delete;
  Params& operator=(const Params&) = delete;

  // V3's init: every matrix ~ N(0, std) (std 0.006 in the report), norms 1, router bias 0.
  // Counter-based, so the same seed gives the same weights whatever the thread count.
  void init_random(uint64_t seed, float std);
  // Copies a (validated) checkpoint of the same config, dequantising FP8/BF16 into float32.
  // Shared MTP tensors take the main model's values; a checkpoint whose copies differ is
  // reported (once) on stderr.
  void load(const Checkpoint& ck);

  const ModelConfig& config() const { return cfg_; }
  const std::vector<ParamTensor>& tensors() const { return tensors_; }
  const ParamTensor* find(const std::string& name) const;
  int64_t size() const { return static_cast<int64_t>(data_.size()); }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float* grad() { return grad_.data(); }
  const float* grad() const { return grad_.data(); }
  void zero_grad();
  int64_t trainable_count() const;
  // Only the MTP layers' own tensors stay trainable (`dsv3 train --mtp-only`); shared MTP
  // tensors are the main ones, so they freeze too.
  void freeze_main();

  // Views into data() and grad() (F32 WeightViews; the bias pointers point at data()).
  const ModelWeights& weights() const { return w_; }
  const ModelWeights& grads() const { return g_; }

 private:
  ModelConfig cfg_;
  std::vector<ParamTensor> tensors_;
  std::vector<float> data_, grad_;
  ModelWeights w_, g_;
};

// A view's float32 data for writing (grad and master views point into Params' own buffers).
inline float* mut(const WeightView& v) { return const_cast<float*>(static_cast<const float*>(v.data)) + v.row0 * v.cols; }

}  // namespace dsv3
