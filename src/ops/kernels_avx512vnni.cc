// The AVX-512 kernels with the int4 decode GEMV on AVX512_VNNI integer dot products
// (gemv_block_i4_vnni in kernels_impl.h); everything else as kernels_avx512.cc. Compiled with
// AVX512_VNNI on top of the AVX-512 flags (CMakeLists.txt) and used only when the CPU has it and
// ops::set_int4_vnni has not turned it off (ops.cc).
#include "ops/kernels_impl.h"
#include "ops/simd_avx512.h"

namespace dsv3::ops::detail {
namespace {

struct Avx512Vnni : Avx512 {
  static constexpr bool kI4Vnni = true;
  using Vi = __m512i;
  static Vi zero_i() { return _mm512_setzero_si512(); }
  // 64 packed bytes -> the low nibbles (even columns) and the high ones (odd columns), as u8.
  static void nibbles(const uint8_t* p, Vi& lo, Vi& hi) {
    const Vi b = _mm512_loadu_si512(p), m = _mm512_set1_epi8(15);
    lo = _mm512_and_si512(b, m);
    hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), m);
  }
  // acc + per 32-bit lane the sum of 4 products u8 x s8 (64 s8 at p).
  static Vi dpbusd(Vi acc, Vi u8, const int8_t* p) { return _mm512_dpbusd_epi32(acc, u8, _mm512_loadu_si512(p)); }
  static Vi loadu_i(const int8_t* p) { return _mm512_loadu_si512(p); }
  static Vi shl7(Vi a) { return _mm512_slli_epi32(a, 7); }
  static Vi sub_i(Vi a, Vi b) { return _mm512_sub_epi32(a, b); }
  static Vi add_i(Vi a, Vi b) { return _mm512_add_epi32(a, b); }
  static V to_float(Vi a) { return _mm512_cvtepi32_ps(a); }
  static void quantize_chunk(const float* xc, int8_t* p, float* unit) { quantize_vnni_chunk_avx512(xc, p, unit); }
};

}  // namespace

// The scalar quantize_vnni_chunk (ops.cc) 16 columns at a time, with the same float operations
// per element (roundscale to nearest even is nearbyint), so the same bytes: 17x fewer
// instructions for the 150 or so chunks of x an int4 decode step prepares on one thread.
void quantize_vnni_chunk_avx512(const float* xc, int8_t* p, float* unit) {
  __m512 vmax = _mm512_setzero_ps();
  for (int i = 0; i < 8; ++i) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xc + 16 * i)));
  const float amax = _mm512_reduce_max_ps(vmax);
  const float u = amax > 0 ? 127.0f / amax : 0.0f;
  *unit = amax > 0 ? amax / (127.0f * 16384.0f) : 0.0f;
  const __m512 uv = _mm512_set1_ps(u), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f), s128 = _mm512_set1_ps(128.0f);
  // 16 int8 in column order -> the 8 even columns' bytes, then the 8 odd ones'
  const __m128i split = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  int32_t lane8[16];
  for (int i = 0; i < 8; ++i) {  // columns 16i .. 16i + 15
    __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(xc + 16 * i), uv), lo), hi);
    __m512i whole = _mm512_setzero_si512();
    for (int q = 0; q < 3; ++q) {
      const __m512 a = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i ai = _mm512_cvtps_epi32(a);
      const __m128i b = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(ai), split);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(p + q * 128 + 8 * i), b);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(p + q * 128 + 64 + 8 * i), _mm_unpackhi_epi64(b, b));
      whole = _mm512_add_epi32(_mm512_slli_epi32(whole, 7), ai);
      v = _mm512_mul_ps(_mm512_sub_ps(v, a), s128);
    }
    whole = _mm512_slli_epi32(whole, 3);
    lane8[2 * i] = _mm512_mask_reduce_add_epi32(0x00FF, whole);
    lane8[2 * i + 1] = _mm512_mask_reduce_add_epi32(0xFF00, whole);
  }
  std::memcpy(p + 3 * 128, lane8, sizeof lane8);
}

const Kernels& avx512vnni_kernels() { return kernels_for<Avx512Vnni>(); }

}  // namespace dsv3::ops::detail
