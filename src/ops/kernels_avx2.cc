// AVX2 + FMA + F16C kernels; this file alone is compiled with those flags (CMakeLists.txt) and
// is only called after a run-time CPU check (ops.cc).
#include <immintrin.h>

#include <cstring>

#include "ops/kernels_impl.h"

namespace dsv3::ops::detail {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int kGemvTokens = 2;  // 2 rows x 2 tokens x (block + total) = 8 ymm accumulators
  static constexpr int kGemvRowsOneToken = 4;  // 4 accumulators + 4 totals + x of 16 ymm (see gemv_range)
  static constexpr int kTTokens = 1;  // matmul_t: 1 token x 8 accumulators (16 ymm in all)
  static constexpr int kTileRows = 6;    // micro-kernel 6 rows x 16 tokens = 12 ymm accumulators
  static constexpr int kTileVecs = 2;
  static constexpr bool kBf16Gemm = false;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static V load_bf16(const uint16_t* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
  static V load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // Same f16 trick as the AVX-512 version (see there): e4m3 value times 2^-8, exactly.
  // Same integer trick as the AVX-512 version (see there): e4m3 value times 2^-120, exactly.
  static V load_e4m3_x2m120(const uint8_t* p) {
    const __m256i s = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(s, 20), _mm256_set1_epi32(static_cast<int>(0x87F00000u))));
  }
  static V load_e4m3_x2m8(const uint8_t* p) {
    const __m128i s = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_cvtph_ps(_mm_and_si128(_mm_slli_epi16(s, 7), _mm_set1_epi16(static_cast<short>(0xBF80))));
  }
  // 4 bytes of packed int4 -> 8 floats (nibble - 8), as the AVX-512 version.
  static V load_i4(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    const __m128i b = _mm_cvtsi32_si128(v);
    const __m256i d = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    const __m256i nib = _mm256_and_si256(_mm256_srlv_epi32(d, _mm256_set_epi32(4, 0, 4, 0, 4, 0, 4, 0)), _mm256_set1_epi32(15));
    return _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(nib, _mm256_set1_epi32(0x4B000000))), _mm256_set1_ps(8388616.0f));
  }
  // 8 bytes of packed int4 -> even / odd columns' nibbles, as the AVX-512 version.
  static void load_i4_split(const uint8_t* p, V& lo, V& hi) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
    hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
  }
  using B = __m256i;  // NaN-code scan, as in the AVX-512 version
  static constexpr int kScanBytes = 32;
  static B scan_zero() { return _mm256_setzero_si256(); }
  static B scan(B m, const uint8_t* p) {
    return _mm256_max_epu8(m, _mm256_or_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                                              _mm256_set1_epi8(static_cast<char>(0x80))));
  }
  static bool scan_found(B m) { return _mm256_movemask_epi8(_mm256_cmpeq_epi8(m, _mm256_set1_epi8(-1))) != 0; }
  static V exp(V x) {
    const V under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3365f), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3365f)), _mm256_set1_ps(88.0f));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    V p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
  }
};

}  // namespace

const Kernels& avx2_kernels() { return kernels_for<Avx2>(); }

}  // namespace dsv3::ops::detail
