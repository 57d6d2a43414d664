// The AVX-512 (F, BW, VL, DQ) vector interface of kernels_impl.h, shared by kernels_avx512.cc and
// kernels_avx512bf16.cc. Include it only from translation units compiled with those flags; it
// sits in an unnamed namespace, so each one gets a private copy.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace dsv3::ops::detail {
namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int kGemvTokens = 4;  // 2 rows x 4 tokens x (block + total) = 16 zmm; 8 spills
  static constexpr int kGemvRowsOneToken = 8;  // 8 accumulators + 8 totals + x (see gemv_range)
  static constexpr int kTTokens = 3;  // matmul_t: 3 tokens x 8 accumulators = 24 zmm
  static constexpr int kTileRows = 8;    // micro-kernel 8 rows x 32 tokens = 16 zmm accumulators
  static constexpr int kTileVecs = 2;
  static constexpr bool kBf16Gemm = true;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  // out[i] = hsum(v[i]) for 8 vectors, bit for bit (the same pairs in the same order as GCC's
  // _mm512_reduce_add_ps: lane l + l+8, + l+4, then (0+2) + (1+3)), with the shuffles of the
  // last levels shared by several vectors: ~40 instructions instead of ~80. It matters for
  // small-K GEMVs (the demo's 96-512 columns: decode +4-6%, its two-token MTP verify +11-13%).
  static void hsum8(const V* v, float* out) {
    __m256 a[8];
    for (int i = 0; i < 8; ++i) a[i] = _mm256_add_ps(_mm512_extractf32x8_ps(v[i], 1), _mm512_castps512_ps256(v[i]));
    __m256 b[4];  // [v[2j] lanes 0-3 | v[2j+1] lanes 0-3], each lane l summing l, l+4, l+8, l+12
    for (int j = 0; j < 4; ++j)
      b[j] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * j], a[2 * j + 1], 0x31), _mm256_permute2f128_ps(a[2 * j], a[2 * j + 1], 0x20));
    // Per 128-bit lane: [p0+p2, p1+p3, q0+q2, q1+q3] of two vectors p (b[2k]) and q (b[2k+1]).
    const __m256 z0 = _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 z1 = _mm256_add_ps(_mm256_shuffle_ps(b[2], b[3], _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(b[2], b[3], _MM_SHUFFLE(3, 2, 3, 2)));
    // (0+2) + (1+3): low lane holds v0, v2, v4, v6; high lane v1, v3, v5, v7.
    const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(z0, z1, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(z0, z1, _MM_SHUFFLE(3, 1, 3, 1)));
    _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
  static V load_bf16(const uint16_t* p) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
  static V load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // e4m3 -> f32 times 2^-8, exactly: the sign-extended byte shifted left by 7 is an f16 with the
  // same sign, mantissa and exponent field (bias 15 instead of 7, hence 2^-8) once bit 14 (a copy
  // of the sign) is cleared; subnormal codes become f16 subnormals, which vcvtph2ps converts
  // exactly. NaN codes become +-1.875 (see has_e4m3_nan).
  // e4m3 -> f32 times 2^-120, exactly, with integer ops only: the sign-extended byte shifted
  // left by 20 has the sign at bit 31 and exponent + mantissa at bits 26..20; clearing bits
  // 30..27 (copies of the sign) leaves an f32 whose exponent field is the e4m3 one (bias 127
  // instead of 7, hence 2^-120). Subnormal codes become f32 subnormals of the same value
  // times 2^-120. NaN codes become finite (see has_e4m3_nan).
  static V load_e4m3_x2m120(const uint8_t* p) {
    const __m512i s = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(s, 20), _mm512_set1_epi32(static_cast<int>(0x87F00000u))));
  }
  static V load_e4m3_x2m8(const uint8_t* p) {
    const __m256i s = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(s, 7), _mm256_set1_epi16(static_cast<short>(0xBF80))));
  }
  // 8 bytes of packed int4 -> 16 floats (nibble - 8), low nibble first: each byte doubled into
  // two 32-bit lanes, shifted by 0 or 4 and masked, ORed into the mantissa of 2^23, minus 2^23 + 8.
  static V load_i4(const uint8_t* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m512i d = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    const __m512i sh = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i nib = _mm512_and_si512(_mm512_srlv_epi32(d, sh), _mm512_set1_epi32(15));
    return _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(nib, _mm512_set1_epi32(0x4B000000))), _mm512_set1_ps(8388616.0f));
  }
  // 16 bytes of packed int4 -> the even columns' nibbles (lo) and the odd columns' (hi), 0..15.
  static void load_i4_split(const uint8_t* p, V& lo, V& hi) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    lo = _mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(15)));
    hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
  }
  // NaN-code scan over 64 bytes at a time (see has_e4m3_nan in kernels_impl.h): the running
  // unsigned max of (byte | 0x80) reaches 0xFF exactly when some byte's low 7 bits are all set.
  using B = __m512i;
  static constexpr int kScanBytes = 64;
  static B scan_zero() { return _mm512_setzero_si512(); }
  static B scan(B m, const uint8_t* p) {
    return _mm512_max_epu8(m, _mm512_or_si512(_mm512_loadu_si512(p), _mm512_set1_epi8(static_cast<char>(0x80))));
  }
  static bool scan_found(B m) { return _mm512_cmpeq_epi8_mask(m, _mm512_set1_epi8(-1)) != 0; }
  // Cephes expf: |rel err| < 2 ulp on [-87.3, 88]; below -87.3 (incl. -inf) returns 0.
  static V exp(V x) {
    const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3365f), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3365f)), _mm512_set1_ps(88.0f));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    V p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps(static_cast<__mmask16>(~under), p, _mm512_castsi512_ps(e));
  }
};

}  // namespace
}  // namespace dsv3::ops::detail
