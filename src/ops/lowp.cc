// The low-precision Linear: quantise or round the inputs of each of the three GEMMs, then run
// gemm_fp8 (FP8) or the fp32 GEMMs on the rounded copies (BF16). See lowp.h for the tiles.
#include "ops/lowp.h"

#include <algorithm>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fp8_block.h"
#include "core/tensor.h"
#include "ops/grad.h"
#include "ops/kernels.h"
#include "ops/ops.h"

namespace dsv3::ops {
namespace {

using detail::buffer;
using detail::f32_view;

// Per-call-site buffers; the trainer calls the Linear from one thread.
struct Buffers {
  std::vector<float> a, sa, b, sb, t;
};
Buffers& bufs() {
  static thread_local Buffers b;
  return b;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// dst [C, R] = src [R, C]^T.
void transpose(const float* src, int64_t R, int64_t C, float* dst) { detail::transpose(src, R, C, C, dst); }

// A quantised operand in its own buffers.
struct QOperand {
  float* q;
  float* s;
};
QOperand quantize_into(std::vector<float>& qv, std::vector<float>& sv, const float* src, int64_t M, int64_t K,
                       int64_t ld, int64_t tr, int64_t tc) {
  QOperand o{buffer(qv, M * K), buffer(sv, ceil_div(M, tr) * ceil_div(K, tc))};
  quantize_fp8(src, M, K, ld, tr, tc, o.q, o.s);
  return o;
}

}  // namespace

GemmPrecision parse_gemm_precision(const char* name) {
  const std::string_view v = name;
  if (v == "fp32" || v == "f32") return GemmPrecision::F32;
  if (v == "bf16") return GemmPrecision::BF16;
  if (v == "fp8") return GemmPrecision::FP8;
  fail("--precision {}: expected fp32, bf16 or fp8", v);
}

const char* gemm_precision_name(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::BF16: return "bf16";
    case GemmPrecision::FP8: return "fp8";
    default: return "fp32";
  }
}

void linear_fwd(GemmPrecision p, const float* x, int64_t n, const float* w, int64_t R, int64_t C, float* y) {
  Buffers& b = bufs();
  switch (p) {
    case GemmPrecision::F32: return matmul(x, n, C, f32_view(w, R, C), y, R);
    case GemmPrecision::BF16: {
      float* xr = buffer(b.a, n * C);
      float* wr = buffer(b.b, R * C);
      round_bf16(x, xr, n * C);
      round_bf16(w, wr, R * C);
      return matmul(xr, n, C, f32_view(wr, R, C), y, R);
    }
    case GemmPrecision::FP8: {
      const QOperand qx = quantize_into(b.a, b.sa, x, n, C, C, 1, kFp8Block);
      // B = W^T [C, R]; a 128x128 block of W^T holds the elements of one block of W, so
      // quantising the transpose gives W's values and scales, transposed.
      float* wt = buffer(b.t, C * R);
      transpose(w, R, C, wt);
      const QOperand qw = quantize_into(b.b, b.sb, wt, C, R, R, kFp8Block, kFp8Block);
      return gemm_fp8({qx.q, qx.s, qw.q, qw.s, kFp8Block, n, C, R, y, R, false});
    }
  }
}

void linear_bwd(GemmPrecision p, const float* x, const float* dy, int64_t n, const float* w, int64_t R, int64_t C,
                float* dw, float* dx, bool acc_dx) {
  Buffers& b = bufs();
  switch (p) {
    case GemmPrecision::F32:
      if (dw) matmul_wgrad(dy, n, R, x, C, dw, R, C, true);
      if (dx) matmul_dgrad(dy, n, R, f32_view(w, R, C), dx, C, acc_dx);
      return;
    case GemmPrecision::BF16: {
      float* dyr = buffer(b.a, n * R);
      round_bf16(dy, dyr, n * R);
      if (dw) {
        float* xr = buffer(b.b, n * C);
        round_bf16(x, xr, n * C);
        matmul_wgrad(dyr, n, R, xr, C, dw, R, C, true);
      }
      if (dx) {
        float* wr = buffer(b.t, R * C);
        round_bf16(w, wr, R * C);
        matmul_dgrad(dyr, n, R, f32_view(wr, R, C), dx, C, acc_dx);
      }
      return;
    }
    case GemmPrecision::FP8: {
      if (dx) {  // dx [n, C] = dy [n, R] . W [R, C]
        const QOperand qdy = quantize_into(b.a, b.sa, dy, n, R, R, 1, kFp8Block);
        const QOperand qw = quantize_into(b.b, b.sb, w, R, C, C, kFp8Block, kFp8Block);
        gemm_fp8({qdy.q, qdy.s, qw.q, qw.s, kFp8Block, n, R, C, dx, C, acc_dx});
      }
      if (!dw) return;
      // dW [R, C] += dy^T [R, n] . x [n, C], both with 128x1 tiles along the tokens.
      float* dyt = buffer(b.t, R * n);
      transpose(dy, n, R, dyt);
      const QOperand qa = quantize_into(b.a, b.sa, dyt, R, n, n, 1, kFp8Block);
      const QOperand qx = quantize_into(b.b, b.sb, x, n, C, C, kFp8Block, 1);
      gemm_fp8({qa.q, qa.s, qx.q, qx.s, 1, R, n, C, dw, C, true});
      return;
    }
  }
}

}  // namespace dsv3::ops
