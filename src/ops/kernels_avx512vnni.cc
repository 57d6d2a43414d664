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
};

}  // namespace

const Kernels& avx512vnni_kernels() { return kernels_for<Avx512Vnni>(); }

}  // namespace dsv3::ops::detail
