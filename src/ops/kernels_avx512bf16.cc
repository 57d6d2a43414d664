// The BF16 prefill GEMM (ops::set_prefill_bf16): the tiled GEMM of kernels_impl.h over BF16
// pairs with vdpbf16ps. Compiled with AVX512_BF16 on top of the AVX-512 flags (CMakeLists.txt)
// and called only when the CPU has it (ops.cc checks before enabling the path).
#include "ops/kernels_impl.h"
#include "ops/simd_avx512.h"

namespace dsv3::ops::detail {
namespace {

struct Avx512Bf16 : Avx512 {
  using Vi = __m512i;
  static Vi loadu_i(const uint32_t* p) { return _mm512_loadu_si512(p); }
  static Vi set1_i(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
  // acc[i] += a.bf16[2i+1] * b.bf16[2i+1], then += a.bf16[2i] * b.bf16[2i] (see micro_kernel_bf16)
  // src [2 n] -> n pairs (src[2k], src[2k+1]): vcvtne2ps2bf16 rounds to nearest even, as
  // f32_to_bf16 does (NaN aside), and writes the pairs in memory order.
  static void to_bf16_pairs(const float* src, uint32_t* dst, int64_t n) {
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 2 * k + 16), _mm512_loadu_ps(src + 2 * k));
      _mm512_storeu_si512(dst + k, reinterpret_cast<const __m512i&>(v));
    }
    for (; k < n; ++k) dst[k] = bf16_pair(src[2 * k], src[2 * k + 1]);
  }
  static V dpbf16(V acc, Vi a, Vi b) { return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b)); }
};

template <int TV>
void gemm_bf16_tv(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy, bool accumulate) {
  using I = Avx512Bf16;
  switch (w.dtype) {
    case DType::F32: return gemm<I, DType::F32, TV, true>(x, n, ldx, w, y, ldy, accumulate);
    case DType::BF16: return gemm<I, DType::BF16, TV, true>(x, n, ldx, w, y, ldy, accumulate);
    case DType::F16: return gemm<I, DType::F16, TV, true>(x, n, ldx, w, y, ldy, accumulate);
    case DType::F8_E4M3: return gemm<I, DType::F8_E4M3, TV, true>(x, n, ldx, w, y, ldy, accumulate);
    case DType::I4: return gemm<I, DType::I4, TV, true>(x, n, ldx, w, y, ldy, accumulate);
    default: return;  // rejected by the public entry point
  }
}

}  // namespace

void gemm_bf16_avx512(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy,
                      bool accumulate) {
  using I = Avx512Bf16;
  if (n <= I::W) return gemm_bf16_tv<1>(x, n, ldx, w, y, ldy, accumulate);  // one 16-token tile
  gemm_bf16_tv<I::kTileVecs>(x, n, ldx, w, y, ldy, accumulate);
}

}  // namespace dsv3::ops::detail
