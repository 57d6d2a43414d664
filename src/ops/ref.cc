// Scalar reference ops: one element at a time, written to be obviously correct, not fast.
// Dot products accumulate in double so the reference is more accurate than any fp32 kernel
// it is compared with.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/fp8_block.h"
#include "ops/kernels.h"
#include "ops/lowp.h"
#include "ops/ops.h"

namespace dsv3::ops::ref {

float weight_at(const WeightView& w, int64_t r, int64_t c) {
  const int64_t row = w.row0 + r;
  const size_t i = static_cast<size_t>(row * w.cols + c);
  switch (w.dtype) {
    case DType::F32: return static_cast<const float*>(w.data)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::F8_E4M3: {
      const float s = w.scale_inv[(row / kFp8Block) * w.scale_cols() + c / kFp8Block];
      return e4m3_to_f32(static_cast<const uint8_t*>(w.data)[i]) * s;
    }
    case DType::I4: {
      const uint8_t b = static_cast<const uint8_t*>(w.data)[static_cast<size_t>(row * w.packed_row_bytes() + c / 2)];
      return static_cast<float>(((b >> ((c & 1) * 4)) & 15) - 8) * w.group_scale_at(r, c);
    }
    default: fail("weight dtype {} is not supported by the ops", dtype_name(w.dtype));
  }
}

// One BF16 pair step of vdpbf16ps: inputs DAZ (a BF16 subnormal is 0), exact products, each sum
// rounded to fp32 with the result flushed to zero (FTZ).
namespace {
float bf16_daz(float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; }
float ftz_add(float acc, float p) {
  const float s = acc + p;
  return std::fpclassify(s) == FP_SUBNORMAL ? std::copysign(0.0f, s) : s;
}
float bf16_round(float v) { return bf16_daz(bf16_to_f32(f32_to_bf16(v))); }
}  // namespace

void matmul(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy,
            bool accumulate) {
  if (detail::prefill_bf16() && n >= detail::kBf16MinTokens) {  // the BF16 prefill path (ops.h)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < w.rows; ++r) {
        float acc = 0.0f;
        for (int64_t c = 0; c < w.cols; c += 2) {
          const float x0 = bf16_round(x[t * ldx + c]), w0 = bf16_round(weight_at(w, r, c));
          const float x1 = c + 1 < w.cols ? bf16_round(x[t * ldx + c + 1]) : 0.0f;
          const float w1 = c + 1 < w.cols ? bf16_round(weight_at(w, r, c + 1)) : 0.0f;
          acc = ftz_add(ftz_add(acc, x1 * w1), x0 * w0);
        }
        float& out = y[t * ldy + r];
        out = accumulate ? out + acc : acc;
      }
    return;
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < w.cols; ++c) acc += double(x[t * ldx + c]) * weight_at(w, r, c);
      float& out = y[t * ldy + r];
      out = accumulate ? out + static_cast<float>(acc) : static_cast<float>(acc);
    }
}

void matmul_batch(std::span<const MatmulJob> jobs) {
  for (const MatmulJob& j : jobs) matmul(j.x, j.n, j.ldx, j.w, j.y, j.ldy, j.accumulate);
}

bool has_nan_codes(const WeightView& w) {
  if (w.dtype != DType::F8_E4M3) return false;
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(w.row0 * w.cols);
  for (int64_t i = 0; i < w.rows * w.cols; ++i)
    if ((p[i] & 0x7f) == 0x7f) return true;
  return false;
}

void matmul_t(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < w.cols; ++c) {
      double acc = 0;
      for (int64_t r = 0; r < w.rows; ++r) acc += double(x[t * ldx + r]) * weight_at(w, r, c);
      y[t * ldy + c] = static_cast<float>(acc);
    }
}

void rmsnorm(const float* x, int64_t n, int64_t d, const WeightView& w, float eps, float* y) {
  DSV3_CHECK(w.rows * w.cols == d, "rmsnorm: weight has {} values, expected {}", w.rows * w.cols, d);
  // The weight vector is read as a flat array of d values.
  WeightView flat = w;
  flat.rows = 1;
  flat.cols = d;
  flat.row0 = 0;
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / d) + eps);
    for (int64_t i = 0; i < d; ++i) y[t * d + i] = weight_at(flat, 0, i) * (xr[i] * inv);
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::fmax(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = x[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(x[i] - mx);
    sum += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(x[i] / sum);
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}
void scale(float* y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}
float dot(const float* a, const float* b, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += double(a[i]) * b[i];
  return static_cast<float>(acc);
}
void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// The FP8 recipe's GEMM, one output cell at a time (lowp.h): per 128-block of K the exact
// products are summed in k order in fp32, then promoted as c = fma(p, sa * sb, c).
void gemm_fp8_cells(const Fp8Gemm& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t KB = (g.K + kFp8Block - 1) / kFp8Block, NB = g.bn == 1 ? g.N : (g.N + kFp8Block - 1) / kFp8Block;
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      float c = g.accumulate ? g.c[m * g.ldc + n] : 0.0f;
      for (int64_t kb = 0; kb < KB; ++kb) {
        float p = 0.0f;
        for (int64_t k = kb * kFp8Block; k < std::min(g.K, (kb + 1) * kFp8Block); ++k) p += g.qa[m * g.K + k] * g.qb[k * g.N + n];
        c = std::fma(p, g.sa[m * KB + kb] * g.sb[kb * NB + n / g.bn], c);
      }
      g.c[m * g.ldc + n] = c;
    }
}
void gemm_fp8(const Fp8Gemm& g) { gemm_fp8_cells(g, 0, g.M, 0, g.N); }

// FP8 tiles one at a time: amax, scale, then each value through core/dtype.h's E4M3 rounding.
void quantize_fp8(const float* src, int64_t M, int64_t K, int64_t ld, int64_t tr, int64_t tc, float* q, float* s) {
  const int64_t MT = (M + tr - 1) / tr, KT = (K + tc - 1) / tc;
  for (int64_t ti = 0; ti < MT; ++ti)
    for (int64_t tj = 0; tj < KT; ++tj) {
      const int64_t r0 = ti * tr, r1 = std::min(M, r0 + tr), c0 = tj * tc, c1 = std::min(K, c0 + tc);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(src[r * ld + c]));
      const float scale = fp8_tile_scale(amax);
      s[ti * KT + tj] = scale;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) q[r * K + c] = e4m3_to_f32(f32_to_e4m3(src[r * ld + c] / scale));
    }
}

void round_bf16(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
}

}  // namespace dsv3::ops::ref
