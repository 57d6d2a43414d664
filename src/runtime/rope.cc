#include "runtime/rope.h"

#include <algorithm>
#include <cmath>

namespace dsv3 {

Rope::Rope(const ModelConfig& cfg) : dim_(cfg.qk_rope_head_dim) {
  const int64_t half = dim_ / 2;
  const float base = static_cast<float>(cfg.rope_theta);
  inv_freq_.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq_[static_cast<size_t>(i)] =
        1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim_));
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.type != "yarn") return;
  const double factor = rs.factor;
  auto mscale = [&](double m) { return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; };
  attention_factor_ = static_cast<float>(rs.mscale != 0.0 && rs.mscale_all_dim != 0.0
                                             ? mscale(rs.mscale) / mscale(rs.mscale_all_dim)
                                             : mscale(1.0));
  const double d = static_cast<double>(dim_), theta = cfg.rope_theta;
  const double orig = static_cast<double>(rs.original_max_position_embeddings);
  auto correction_dim = [&](double rot) { return d * std::log(orig / (rot * 2.0 * M_PI)) / (2.0 * std::log(theta)); };
  double low = correction_dim(rs.beta_fast), high = correction_dim(rs.beta_slow);
  if (rs.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0);
  high = std::min(high, d - 1.0);
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const float ramp = std::clamp(static_cast<float>((static_cast<double>(i) - low) / (high - low)), 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    const float pos_freq = std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim_));
    const float interp = 1.0f / (static_cast<float>(factor) * pos_freq);
    const float extrap = 1.0f / pos_freq;
    inv_freq_[static_cast<size_t>(i)] = interp * (1.0f - extrapolation_factor) + extrap * extrapolation_factor;
  }
}

void Rope::table(int64_t pos, float* cs) const {
  for (int64_t i = 0; i < dim_ / 2; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq_[static_cast<size_t>(i)];
    cs[2 * i] = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_factor_;
    cs[2 * i + 1] = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_factor_;
  }
}

void Rope::rotate(float* x, const float* cs, int64_t dim) {
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
    x[2 * i] = a * c - b * s;
    x[2 * i + 1] = b * c + a * s;
  }
}

}  // namespace dsv3

namespace dsv3 {

// The transpose of rotate (a rotation by -angle; cos/sin carry the same attention factor,
// so this is exactly the backward of rotate, not its inverse).
void Rope::rotate_backward(float* dx, const float* cs, int64_t dim) {
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float a = dx[2 * i], b = dx[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
    dx[2 * i] = a * c + b * s;
    dx[2 * i + 1] = b * c - a * s;
  }
}

}  // namespace dsv3
