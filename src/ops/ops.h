// Backend-neutral CPU compute kernels. Activations are float32; weights are WeightViews over
// mmap'd checkpoint memory in their stored dtype (F32, BF16, F16, FP8 E4M3 with 128x128 block
// scales). Dequantisation happens inside the kernels; accumulation is always fp32.
//
// Every op has a scalar, obviously-correct twin in dsv3::ops::ref with the same signature; the
// fast versions (AVX2+FMA, AVX-512) are chosen at run time and are tested against it.
// Results never depend on the thread count: threads split output elements, never a reduction.
#pragma once
#include <cstdint>
#include <span>
#include <type_traits>

#include "core/tensor.h"

namespace dsv3::ops {

// SIMD level the dispatching entry points use. Default: the best the CPU supports, or the
// environment variable DSV3_SIMD=scalar|avx2|avx512 (read once, on first use).
enum class Simd { Scalar, Avx2, Avx512 };
const char* simd_name(Simd s);
bool simd_supported(Simd s);
Simd simd_level();
// Throws dsv3::Error when the CPU lacks `s`.
void set_simd_level(Simd s);

// Threads used by the ops (OpenMP). Default: all cores.
void set_num_threads(int n);
// Prefill precision. Off (default): every matmul in fp32 FMAs over exactly dequantised weights.
// On: matmuls of at least kPrefillBf16MinTokens tokens, i.e. every one the tiled GEMM takes
// (prefill, scoring, large expert groups; decode GEMVs stay fp32), round the tokens
// and the dequantised weights to BF16 and sum exact products in fp32 with vdpbf16ps, as the
// official implementation's BF16 compute does; the scalar reference emulates it bit for bit.
// Needs the AVX-512 level on a CPU with AVX512_BF16 (throws dsv3::Error naming what is missing).
constexpr int64_t kPrefillBf16MinTokens = 9;
void set_prefill_bf16(bool on);
bool prefill_bf16_supported();
// Int4 decode (GEMV, up to 8 tokens) on AVX512_VNNI integer dot products, with x carried to
// about 21 bits of each 128-column chunk's largest element (see gemv_block_i4_vnni); prefill and
// scoring keep the exact float path. Default on where supported (the AVX-512 level on a CPU with
// AVX512_VNNI); off: the float int4 GEMV. Turning it on elsewhere throws dsv3::Error.
void set_int4_vnni(bool on);
bool int4_vnni_supported();
int num_threads();

// f(i) for every i in [0, count) on up to nt threads (OpenMP; `dynamic`: threads take one index
// at a time as they free up, else contiguous static shares). With one thread, or when called from
// inside a parallel region (whose nested regions OpenMP runs on one thread anyway), the loop runs
// directly: libgomp enters even a one-thread region with a futex system call, and decode of a
// small model at -t 1 entered ~460 regions per token (10% of its time in the kernel).
void parallel_for_fn(int nt, int64_t count, bool dynamic, void (*fn)(void*, int64_t), void* ctx);
template <class F>
void parallel_for(int nt, int64_t count, F&& f, bool dynamic = false) {
  using Fn = std::remove_reference_t<F>;
  parallel_for_fn(nt, count, dynamic, [](void* c, int64_t i) { (*static_cast<Fn*>(c))(i); },
                  const_cast<void*>(static_cast<const void*>(&f)));
}

// y[n, w.rows] = x[n, w.cols] . W^T. Row strides ldx, ldy in elements. With `accumulate`, y +=.
// W dtype F32, BF16, F16 or F8_E4M3 (scale_inv [ceil(R/128), ceil(C/128)] of the FULL matrix;
// w may be a row slice, see WeightView::row0).
void matmul(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy,
            bool accumulate = false);
// One matmul of a batch: y[n, w.rows] (+)= x[n, w.cols] . W^T, as matmul's arguments.
struct MatmulJob {
  const float* x = nullptr;
  int64_t n = 0, ldx = 0;
  WeightView w;
  float* y = nullptr;
  int64_t ldy = 0;
  bool accumulate = false;
};
// Every job, as if by matmul one after another. Jobs must not write what another job reads or
// writes. Decode-sized jobs (a few tokens) share one parallel region: each thread streams an
// equal contiguous share of all the jobs' rows, then helps with the others' remaining rows, so
// there is one fork/join per batch instead of one per matrix, and a thread the OS preempted
// does not hold the others up (MoE decode runs every chosen expert this way).
void matmul_batch(std::span<const MatmulJob> jobs);
// FP8 E4M3: whether any element of the view is a NaN code (all threads; reads the whole view).
// Other dtypes: false. Owners use it once per weight to set WeightView::nan_state.
bool has_nan_codes(const WeightView& w);
// y[n, w.cols] = x[n, w.rows] . W   (the transposed use: MLA weight absorption, q_nope . W_uk).
void matmul_t(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy);
// y[n, d] = x / sqrt(mean(x^2) + eps) * w, fp32 math; `w` holds d values (any 2-D shape with
// rows*cols == d), dtype F32, BF16 or F16. y may alias x.
void rmsnorm(const float* x, int64_t n, int64_t d, const WeightView& w, float eps, float* y);
// out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// In place, numerically stable (max subtracted); -inf entries become 0.
void softmax(float* x, int64_t n);
void add(float* y, const float* x, int64_t n);      // y += x
void scale(float* y, float s, int64_t n);           // y *= s
float dot(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);  // y += a*x

namespace ref {
void matmul(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy,
            bool accumulate = false);
void matmul_batch(std::span<const MatmulJob> jobs);
bool has_nan_codes(const WeightView& w);
void matmul_t(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy);
void rmsnorm(const float* x, int64_t n, int64_t d, const WeightView& w, float eps, float* y);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void softmax(float* x, int64_t n);
void add(float* y, const float* x, int64_t n);
void scale(float* y, float s, int64_t n);
float dot(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);
// W[row0+r, c] as float32, exactly as the reference dequantises it: e4m3(W) * scale_inv in fp32.
float weight_at(const WeightView& w, int64_t r, int64_t c);
}  // namespace ref

}  // namespace dsv3::ops
