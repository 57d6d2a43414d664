// Rotary embedding on consecutive pairs (2i, 2i+1) with YaRN frequencies (spec section 4),
// following transformers' _compute_yarn_parameters: inverse frequencies in float32, angle =
// float(pos) * inv_freq, cos/sin scaled by the attention factor.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv3 {

class Rope {
 public:
  explicit Rope(const ModelConfig& cfg);
  int64_t dim() const { return dim_; }
  // Fills cs [dim] with (cos_i, sin_i) pairs for `pos`, to rotate many heads at one position.
  void table(int64_t pos, float* cs) const;
  static void rotate(float* x, const float* cs, int64_t dim);
  // dx [dim] <- the gradient before rotate, given the gradient after it (rotate^T . dx).
  static void rotate_backward(float* dx, const float* cs, int64_t dim);
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  float attention_factor() const { return attention_factor_; }

 private:
  int64_t dim_;
  std::vector<float> inv_freq_;  // [dim/2]
  float attention_factor_ = 1.0f;
};

}  // namespace dsv3
