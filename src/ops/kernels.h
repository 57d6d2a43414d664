// Private to src/ops: the table of kernels one SIMD level provides, and the helpers the
// SIMD translation units share (they are compiled with ISA flags, so they must not define
// inline functions or templates that other units could pick up; see kernels_impl.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/lowp.h"
#include "ops/ops.h"

namespace dsv3::ops::detail {

// Inputs reaching these are validated by the public entry points (ops.cc).
struct Kernels {
  void (*matmul)(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy,
                 bool accumulate);
  void (*matmul_batch)(std::span<const MatmulJob> jobs);
  bool (*has_nan_codes)(const WeightView& w);
  void (*matmul_t)(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y,
                   int64_t ldy);
  void (*rmsnorm)(const float* x, int64_t n, int64_t d, const WeightView& w, float eps, float* y);
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  void (*softmax)(float* x, int64_t n);
  void (*add)(float* y, const float* x, int64_t n);
  void (*scale)(float* y, float s, int64_t n);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float a, const float* x, float* y, int64_t n);
  void (*gemm_fp8)(const Fp8Gemm& g);
  void (*round_bf16)(const float* src, float* dst, int64_t n);
  void (*quantize_fp8)(const float* src, int64_t M, int64_t K, int64_t ld, int64_t tr, int64_t tc, float* q, float* s);
};

// Decode up to this many tokens with the GEMV; beyond it the tiled GEMM wins.
constexpr int64_t kGemvMaxTokens = 8;
constexpr int64_t kBf16MinTokens = kPrefillBf16MinTokens;

const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
// The AVX-512 kernels whose int4 decode GEMV uses AVX512_VNNI (kernels_avx512vnni.cc).
const Kernels& avx512vnni_kernels();
// The BF16 prefill GEMM (kernels_avx512bf16.cc, AVX512_BF16): taken by the AVX-512 matmul for
// kBf16MinTokens tokens or more while prefill_bf16() (ops::set_prefill_bf16).
void gemm_bf16_avx512(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy,
                      bool accumulate);
bool prefill_bf16();

// One 128-column chunk xc [128] (finite) of a token as the int4 VNNI GEMV reads it
// (gemv_block_i4_vnni): p [3 * 128 + 64] gets x * 127 / max|xc| split into three int8 parts
// a1 + a2 2^-7 + a3 2^-14 (each rounded to nearest even), even columns then odd, then 16 int32
// lane corrections (8 x the sum of a1 2^14 + a2 2^7 + a3 over columns 8i..8i+7); *unit =
// max|xc| / (127 2^14) (0 for a chunk of zeros). The scalar twin; the AVX-512 form
// (kernels_avx512vnni.cc, CPUs with AVX512_VNNI only) writes the same bytes.
void quantize_vnni_chunk(const float* xc, int8_t* p, float* unit);
void quantize_vnni_chunk_avx512(const float* xc, int8_t* p, float* unit);

// Threads to use for a job of about `work` multiply-adds: 1 for small jobs (a parallel region
// costs microseconds), else num_threads(). Never affects results.
int threads_for(int64_t work);

// Helpers of the training ops (grad.cc, lowp.cc), compiled for the baseline ISA:
// dst[c, r] = src[r, c] for a [R, C] matrix with row stride ld, blocked for the cache;
void transpose(const float* src, int64_t R, int64_t C, int64_t ld, float* dst);
// v grown to at least n floats (per-call-site buffers: the trainer calls the ops from one thread);
float* buffer(std::vector<float>& v, int64_t n);
// a float32 WeightView over p [rows, cols].
WeightView f32_view(const float* p, int64_t rows, int64_t cols);

// 64-byte aligned per-thread buffer of at least n floats; slot selects one of a few
// independent buffers. Contents are undefined; valid until the same thread asks again.
float* scratch(int slot, size_t n);

}  // namespace dsv3::ops::detail
