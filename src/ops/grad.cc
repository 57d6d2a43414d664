// Backward ops. The two matmul gradients reuse the forward GEMM (ops::matmul) on transposed
// copies, so they run at its speed; the elementwise and per-row ops are plain loops that
// OpenMP splits by rows (or by columns for dw), which GCC vectorises.
#include "ops/grad.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/kernels.h"
#include "ops/ops.h"

namespace dsv3::ops {

namespace detail {
// dst[c, r] = src[r, c] for a [R, C] matrix with row stride ld; blocked for the cache.
void transpose(const float* src, int64_t R, int64_t C, int64_t ld, float* dst) {
  constexpr int64_t B = 32;
#pragma omp parallel for collapse(2) schedule(static) num_threads(detail::threads_for(R * C))
  for (int64_t r0 = 0; r0 < R; r0 += B)
    for (int64_t c0 = 0; c0 < C; c0 += B)
      for (int64_t c = c0; c < std::min(C, c0 + B); ++c)
        for (int64_t r = r0; r < std::min(R, r0 + B); ++r) dst[c * R + r] = src[r * ld + c];
}

float* buffer(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

WeightView f32_view(const float* p, int64_t rows, int64_t cols) {
  WeightView v;
  v.data = p;
  v.dtype = DType::F32;
  v.rows = rows;
  v.cols = cols;
  return v;
}
}  // namespace detail

using detail::buffer;
using detail::f32_view;
using detail::transpose;

void matmul_wgrad(const float* dy, int64_t n, int64_t lddy, const float* x, int64_t ldx, float* dw, int64_t R,
                  int64_t C, bool accumulate) {
  DSV3_CHECK(n >= 0 && R >= 0 && C >= 0 && lddy >= R && ldx >= C, "matmul_wgrad: bad shape n {} R {} C {}", n, R, C);
  if (n == 0) {
    if (!accumulate) std::fill(dw, dw + R * C, 0.0f);
    return;
  }
  static thread_local std::vector<float> dyt_buf, xt_buf;
  float* dyt = buffer(dyt_buf, R * n);  // [R, n]
  float* xt = buffer(xt_buf, C * n);    // [C, n]
  transpose(dy, n, R, lddy, dyt);
  transpose(x, n, C, ldx, xt);
  matmul(dyt, R, n, f32_view(xt, C, n), dw, C, accumulate);
}

void matmul_dgrad(const float* dy, int64_t n, int64_t lddy, const WeightView& w, float* dx, int64_t lddx,
                  bool accumulate) {
  const int64_t R = w.rows, C = w.cols;
  DSV3_CHECK(n >= 0 && lddy >= R && lddx >= C, "matmul_dgrad: bad shape n {} [{}, {}]", n, R, C);
  if (n == 0) return;
  static thread_local std::vector<float> wf_buf, wt_buf;
  const float* wf;  // W as float32 [R, C]
  if (w.dtype == DType::F32) {
    wf = static_cast<const float*>(w.data) + w.row0 * C;
  } else {
    float* b = buffer(wf_buf, R * C);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) b[r * C + c] = ref::weight_at(w, r, c);
    wf = b;
  }
  float* wt = buffer(wt_buf, R * C);  // [C, R]
  transpose(wf, R, C, C, wt);
  matmul(dy, n, lddy, f32_view(wt, C, R), dx, lddx, accumulate);
}

void rmsnorm_backward(const float* x, const float* dy, int64_t n, int64_t d, const float* w, float eps, float* dx,
                      float* dw, bool accumulate_dx) {
  // y_j = x_j r w_j with r = (mean(x^2) + eps)^-1/2:
  // dx_j = r (dy_j w_j) - x_j r^3 / d * sum_k dy_k w_k x_k ;  dw_j = sum_t dy_j x_j r.
  std::vector<float> rs(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) num_threads(detail::threads_for(n * d))
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    const float* g = dy + t * d;
    float ss = 0.0f, dot = 0.0f;
    for (int64_t j = 0; j < d; ++j) ss += xr[j] * xr[j];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    rs[static_cast<size_t>(t)] = r;
    for (int64_t j = 0; j < d; ++j) dot += g[j] * w[j] * xr[j];
    const float k = dot * r * r * r / static_cast<float>(d);
    float* o = dx + t * d;
    for (int64_t j = 0; j < d; ++j) {
      const float v = r * g[j] * w[j] - xr[j] * k;
      o[j] = accumulate_dx ? o[j] + v : v;
    }
  }
  if (!dw) return;
#pragma omp parallel for schedule(static) num_threads(detail::threads_for(n * d))
  for (int64_t j = 0; j < d; ++j) {
    float s = 0.0f;
    for (int64_t t = 0; t < n; ++t) s += dy[t * d + j] * x[t * d + j] * rs[static_cast<size_t>(t)];
    dw[j] += s;
  }
}

void silu_mul_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(detail::threads_for(n * 8))
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], sg = 1.0f / (1.0f + std::exp(-g)), d = dout[i];
    const float u = up[i];
    dup[i] = d * g * sg;
    dgate[i] = d * u * sg * (1.0f + g * (1.0f - sg));
  }
}

void softmax_backward(const float* p, float* dp, int64_t n) { ref::softmax_backward(p, dp, n); }

double cross_entropy(float* logits, int64_t n, int64_t V, const int32_t* targets, float grad_scale, float* logprob) {
  std::vector<double> loss(static_cast<size_t>(n), 0.0);
#pragma omp parallel for schedule(static) num_threads(detail::threads_for(n * V * 4))
  for (int64_t t = 0; t < n; ++t) {
    float* z = logits + t * V;
    const int32_t y = targets[t];
    if (y < 0) {
      std::fill(z, z + V, 0.0f);
      if (logprob) logprob[t] = 0.0f;
      continue;
    }
    float m = z[0];
    for (int64_t j = 1; j < V; ++j) m = std::max(m, z[j]);
    float s = 0.0f;
    for (int64_t j = 0; j < V; ++j) s += std::exp(z[j] - m);
    const float lse = m + std::log(s);
    const float lp = z[y] - lse;
    loss[static_cast<size_t>(t)] = -static_cast<double>(lp);
    if (logprob) logprob[t] = lp;
    for (int64_t j = 0; j < V; ++j) z[j] = grad_scale * std::exp(z[j] - lse);
    z[y] -= grad_scale;
  }
  double total = 0.0;
  for (double l : loss) total += l;  // fixed order: independent of the thread count
  return total;
}

namespace ref {

void matmul_wgrad(const float* dy, int64_t n, int64_t lddy, const float* x, int64_t ldx, float* dw, int64_t R,
                  int64_t C, bool accumulate) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      float s = 0.0f;
      for (int64_t t = 0; t < n; ++t) s += dy[t * lddy + r] * x[t * ldx + c];
      dw[r * C + c] = accumulate ? dw[r * C + c] + s : s;
    }
}

void matmul_dgrad(const float* dy, int64_t n, int64_t lddy, const WeightView& w, float* dx, int64_t lddx,
                  bool accumulate) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < w.cols; ++c) {
      float s = 0.0f;
      for (int64_t r = 0; r < w.rows; ++r) s += dy[t * lddy + r] * weight_at(w, r, c);
      dx[t * lddx + c] = accumulate ? dx[t * lddx + c] + s : s;
    }
}

void rmsnorm_backward(const float* x, const float* dy, int64_t n, int64_t d, const float* w, float eps, float* dx,
                      float* dw, bool accumulate_dx) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    const float* g = dy + t * d;
    float ss = 0.0f;
    for (int64_t j = 0; j < d; ++j) ss += xr[j] * xr[j];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    float dot = 0.0f;
    for (int64_t j = 0; j < d; ++j) dot += g[j] * w[j] * xr[j];
    for (int64_t j = 0; j < d; ++j) {
      const float v = r * g[j] * w[j] - xr[j] * dot * r * r * r / static_cast<float>(d);
      dx[t * d + j] = accumulate_dx ? dx[t * d + j] + v : v;
      if (dw) dw[j] += g[j] * xr[j] * r;
    }
  }
}

void silu_mul_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sg = 1.0f / (1.0f + std::exp(-gate[i]));
    const float silu = gate[i] * sg;
    const float dsilu = sg + gate[i] * sg * (1.0f - sg);  // d silu / d gate
    const float d = dout[i], u = up[i];
    dup[i] = d * silu;
    dgate[i] = d * u * dsilu;
  }
}

void softmax_backward(const float* p, float* dp, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += p[i] * dp[i];
  for (int64_t i = 0; i < n; ++i) dp[i] = p[i] * (dp[i] - s);
}

double cross_entropy(float* logits, int64_t n, int64_t V, const int32_t* targets, float grad_scale, float* logprob) {
  double total = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    float* z = logits + t * V;
    if (targets[t] < 0) {
      std::fill(z, z + V, 0.0f);
      if (logprob) logprob[t] = 0.0f;
      continue;
    }
    double m = z[0], s = 0.0;
    for (int64_t j = 1; j < V; ++j) m = std::max<double>(m, z[j]);
    for (int64_t j = 0; j < V; ++j) s += std::exp(z[j] - m);
    const double lse = m + std::log(s);
    const double lp = z[targets[t]] - lse;
    total -= lp;
    if (logprob) logprob[t] = static_cast<float>(lp);
    for (int64_t j = 0; j < V; ++j) z[j] = static_cast<float>(grad_scale * std::exp(z[j] - lse));
    z[targets[t]] -= grad_scale;
  }
  return total;
}

}  // namespace ref
}  // namespace dsv3::ops
