// Low-precision training GEMMs (spec 9, DeepSeek-V3 report 3.3): exact CPU emulation of the
// FP8 recipe and of the BF16 baseline it is compared with. The GPU backend will run the same
// numerics natively; here each GEMM input is rounded exactly as the hardware would see it.
//
// FP8: an operand is split into tiles, each with scale = max(amax, 1e-12) / 448 (as
// core/fp8_block.h) and values q = e4m3(x / scale), so x ~ q * scale. A GEMM sums, per 128-long
// block of its reduction dimension, the products q_a * q_b in fp32 in index order (a product of
// two E4M3 values is exact in fp32), then promotes the block partial p into the fp32 output:
// c = fma(p, s_a * s_b, c), as the report's promotion to CUDA cores every 128 elements does.
// Tiles per GEMM of y = x . W^T (x [n, C], W [R, C]):
//   forward  y  = x . W^T      x: 1x128 tiles along C     W: 128x128 blocks
//   dgrad    dx = dy . W       dy: 1x128 tiles along R    W: 128x128 blocks
//   wgrad    dW = dy^T . x     dy, x: 128x1 tiles (128 tokens of one column)
// BF16: inputs rounded to bfloat16 (nearest even), fp32 accumulation; products of two BF16
// values are exact in fp32, so any summation order is a faithful BF16 GEMM.
#pragma once
#include <cstdint>

namespace dsv3::ops {

enum class GemmPrecision { F32, BF16, FP8 };
// "fp32" | "bf16" | "fp8"; throws dsv3::Error naming the flag value otherwise.
GemmPrecision parse_gemm_precision(const char* name);
const char* gemm_precision_name(GemmPrecision p);

// Quantises src [M, K] (row stride ld) in tiles of tr x tc (tr, tc each 1 or 128): q [M, K]
// (row stride K) holds E4M3 values as float32, s [ceil(M/tr), ceil(K/tc)] the tile scales.
void quantize_fp8(const float* src, int64_t M, int64_t K, int64_t ld, int64_t tr, int64_t tc, float* q, float* s);
// dst[i] = src[i] rounded to bfloat16 (nearest even) and widened back; dst may alias src.
void round_bf16(const float* src, float* dst, int64_t n);

// C[M, N] (+)= A[M, K] . B[K, N] from quantised operands (see the top of this file):
// A: qa [M, K] (row stride K), sa [M, ceil(K/128)] (1x128 tiles);
// B: qb [K, N] (row stride N), sb [ceil(K/128), NB] with NB = N for bn = 1 (128x1 tiles) or
//    ceil(N/128) for bn = 128 (128x128 blocks).
struct Fp8Gemm {
  const float* qa = nullptr;
  const float* sa = nullptr;
  const float* qb = nullptr;
  const float* sb = nullptr;
  int64_t bn = 128;
  int64_t M = 0, K = 0, N = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
};
void gemm_fp8(const Fp8Gemm& g);

// One Linear y[n, R] = x[n, C] . W^T (W float32 master weights [R, C]) and its backward,
// with the GEMM inputs in precision p (F32: the plain fp32 ops).
void linear_fwd(GemmPrecision p, const float* x, int64_t n, const float* w, int64_t R, int64_t C, float* y);
// dW[R, C] += dy^T . x unless dw is null (a frozen weight); dx[n, C] (+= with acc_dx) = dy . W
// unless dx is null.
void linear_bwd(GemmPrecision p, const float* x, const float* dy, int64_t n, const float* w, int64_t R, int64_t C,
                float* dw, float* dx, bool acc_dx);

namespace ref {
void gemm_fp8(const Fp8Gemm& g);
// Output cells [m0, m1) x [n0, n1) of gemm_fp8, one at a time (the SIMD kernels' edges use it).
void gemm_fp8_cells(const Fp8Gemm& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void round_bf16(const float* src, float* dst, int64_t n);
void quantize_fp8(const float* src, int64_t M, int64_t K, int64_t ld, int64_t tr, int64_t tc, float* q, float* s);
}  // namespace ref

}  // namespace dsv3::ops
