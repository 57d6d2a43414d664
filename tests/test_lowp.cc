// The FP8 / BF16 training GEMMs (ops/lowp.h) against an emulation written here from the recipe
// alone: E4M3 rounding by brute force over all 256 codes, tile scales from each tile's amax,
// and the block-promoted sum. Every GEMM input must be exactly E4M3 times its tile's scale with
// the report's tile shapes, and every output must match bit for bit, at every SIMD level and
// thread count.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/lowp.h"
#include "ops/ops.h"
#include "testing.h"

namespace dsv3::ops {
namespace {

using dsv3::testing::random_vec;

using dsv3::testing::OpsState;

std::vector<Simd> levels() {
  std::vector<Simd> v{Simd::Scalar};
  for (Simd s : {Simd::Avx2, Simd::Avx512})
    if (simd_supported(s)) v.push_back(s);
  return v;
}

// Nearest finite E4M3 value to v, ties to the even code, saturating at +-448: a search over
// every code, independent of core/dtype.h's bit-level rounding.
float nearest_e4m3(float v) {
  float best = 0;
  int best_code = 0;
  double best_d = INFINITY;
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;  // NaN
    const float e = std::ldexp(static_cast<float>(code & 7) + ((code >> 3 & 15) ? 8.0f : 0.0f),
                               std::max(1, code >> 3 & 15) - 10) * ((code & 0x80) ? -1.0f : 1.0f);
    const double d = std::fabs(static_cast<double>(e) - v);
    if (d < best_d || (d == best_d && (code & 1) == 0 && (best_code & 1) == 1)) best = e, best_code = code, best_d = d;
  }
  return best == 0 ? 0.0f : best;  // -0 and +0 multiply alike
}

// The test's own quantiser: tiles of tr x tc over src [M, K].
struct Quantised {
  std::vector<float> q, s;
};
Quantised quantise(const std::vector<float>& src, int64_t M, int64_t K, int64_t tr, int64_t tc) {
  const int64_t MT = (M + tr - 1) / tr, KT = (K + tc - 1) / tc;
  Quantised o{std::vector<float>(src.size()), std::vector<float>(static_cast<size_t>(MT * KT))};
  for (int64_t ti = 0; ti < MT; ++ti)
    for (int64_t tj = 0; tj < KT; ++tj) {
      float amax = 0;
      for (int64_t r = ti * tr; r < std::min(M, ti * tr + tr); ++r)
        for (int64_t c = tj * tc; c < std::min(K, tj * tc + tc); ++c) amax = std::max(amax, std::fabs(src[r * K + c]));
      const float s = std::max(amax, 1e-12f) / 448.0f;
      o.s[ti * KT + tj] = s;
      for (int64_t r = ti * tr; r < std::min(M, ti * tr + tr); ++r)
        for (int64_t c = tj * tc; c < std::min(K, tj * tc + tc); ++c) o.q[r * K + c] = nearest_e4m3(src[r * K + c] / s);
    }
  return o;
}

// C[M, N] (+)= A . B per the recipe: A [M, K] with scales per (row, 128 of K); B [K, N] with
// scales from sb(kb, n). Partials over each 128 of K in order, promoted with fma.
template <class SB>
void emulate(const Quantised& a, const std::vector<float>& qb, SB sb, int64_t M, int64_t K, int64_t N,
             std::vector<float>& c, bool acc) {
  const int64_t KB = (K + 127) / 128;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float out = acc ? c[m * N + n] : 0.0f;
      for (int64_t kb = 0; kb < KB; ++kb) {
        float p = 0;
        for (int64_t k = kb * 128; k < std::min(K, kb * 128 + 128); ++k) p += a.q[m * K + k] * qb[k * N + n];
        out = std::fma(p, a.s[m * KB + kb] * sb(kb, n), out);
      }
      c[m * N + n] = out;
    }
}

std::vector<float> transpose(const std::vector<float>& x, int64_t R, int64_t C) {
  std::vector<float> t(x.size());
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) t[c * R + r] = x[r * C + c];
  return t;
}

void expect_bits(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]) && !(got[i] == 0 && want[i] == 0))
      if (bad++ == 0) first = static_cast<int64_t>(i);
  EXPECT_EQ(bad, 0) << what << ": first mismatch at " << first << ": " << got[first] << " vs " << want[first];
}

// Values spanning many binades, with one all-zero row, so tiles have very different scales.
std::vector<float> spread(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<float> v = random_vec(static_cast<size_t>(rows * cols), rng);
  std::uniform_int_distribution<int> e(-12, 6);
  for (int64_t r = 0; r < rows; ++r) {
    const float s = std::ldexp(1.0f, e(rng));
    for (int64_t c = 0; c < cols; ++c) v[r * cols + c] = r == 1 ? 0.0f : v[r * cols + c] * s * (c % 37 == 0 ? 64 : 1);
  }
  return v;
}

TEST(LowP, QuantisedValuesAreExactE4m3TimesTheTileScale) {
  OpsState keep;
  std::mt19937 rng(1);
  const int64_t M = 260, K = 300;
  std::vector<float> x = spread(M, K, rng);
  x[5] = 448.0f * 0x1p-20f, x[6] = -x[5] * 0.75f;  // E4M3 subnormals and a tie after scaling
  for (auto [tr, tc] : {std::pair<int64_t, int64_t>{1, 128}, {128, 128}, {128, 1}})
    for (Simd lv : levels()) {
      set_simd_level(lv);
      SCOPED_TRACE(::testing::Message() << simd_name(lv) << " tile " << tr << "x" << tc);
      const Quantised want = quantise(x, M, K, tr, tc);
      std::vector<float> q(x.size()), s(want.s.size());
      quantize_fp8(x.data(), M, K, K, tr, tc, q.data(), s.data());
      expect_bits(s, want.s, "scales");
      expect_bits(q, want.q, "values");
      for (float v : q) ASSERT_EQ(e4m3_to_f32(f32_to_e4m3(v)), v) << "not an E4M3 value";
      // Each tile's largest magnitude maps to +-448 exactly.
      EXPECT_EQ(*std::max_element(q.begin(), q.end()), 448.0f);
    }
  std::vector<float> q(4), s(1);
  EXPECT_THROW(quantize_fp8(x.data(), 2, 2, 2, 64, 128, q.data(), s.data()), Error);
}

TEST(LowP, GemmMatchesTheEmulationBitForBit) {
  OpsState keep;
  std::mt19937 rng(2);
  struct Shape {
    int64_t M, K, N;
  };
  for (Shape sh : {Shape{7, 300, 77}, Shape{33, 128, 64}, Shape{5, 64, 200}, Shape{130, 257, 129}, Shape{1, 1, 1}})
    for (int64_t bn : {int64_t{1}, int64_t{128}}) {
      const std::vector<float> a = spread(sh.M, sh.K, rng), b = spread(sh.K, sh.N, rng);
      const Quantised qa = quantise(a, sh.M, sh.K, 1, 128);
      const Quantised qb = quantise(b, sh.K, sh.N, 128, bn);
      const int64_t NB = (sh.N + bn - 1) / bn;
      const std::vector<float> c0 = random_vec(static_cast<size_t>(sh.M * sh.N), rng);
      for (bool acc : {false, true}) {
        std::vector<float> want = c0;
        emulate(qa, qb.q, [&](int64_t kb, int64_t n) { return qb.s[kb * NB + n / bn]; }, sh.M, sh.K, sh.N, want, acc);
        for (Simd s : levels())
          for (int t : {1, 2}) {
            set_simd_level(s);
            set_num_threads(t);
            std::vector<float> got = c0;
            gemm_fp8({qa.q.data(), qa.s.data(), qb.q.data(), qb.s.data(), bn, sh.M, sh.K, sh.N, got.data(), sh.N, acc});
            SCOPED_TRACE(::testing::Message() << simd_name(s) << " threads " << t << " bn " << bn << " acc " << acc
                                              << " [" << sh.M << "," << sh.K << "," << sh.N << "]");
            expect_bits(got, want, "gemm_fp8");
          }
      }
    }
}

// The three GEMMs of an FP8 Linear use the report's tiles: forward x 1x128 and W 128x128,
// dgrad dy 1x128 and W 128x128, wgrad dy and x 128x1 along the tokens.
TEST(LowP, Fp8LinearRunsItsThreeGemmsOnTheRecipeTiles) {
  OpsState keep;
  std::mt19937 rng(3);
  const int64_t n = 200, R = 150, C = 260;
  const std::vector<float> x = spread(n, C, rng), w = spread(R, C, rng), dy = spread(n, R, rng);
  const Quantised qx_row = quantise(x, n, C, 1, 128), qw = quantise(w, R, C, 128, 128);
  const Quantised qdy_row = quantise(dy, n, R, 1, 128);
  const Quantised qdyt = quantise(transpose(dy, n, R), R, n, 1, 128), qx_col = quantise(x, n, C, 128, 1);
  const int64_t CB = (C + 127) / 128;

  std::vector<float> y_want(static_cast<size_t>(n * R));
  emulate(qx_row, transpose(qw.q, R, C), [&](int64_t kb, int64_t r) { return qw.s[(r / 128) * CB + kb]; }, n, C, R,
          y_want, false);
  const std::vector<float> dx0 = random_vec(static_cast<size_t>(n * C), rng), dw0 = random_vec(static_cast<size_t>(R * C), rng);
  std::vector<float> dx_want = dx0, dw_want = dw0;
  emulate(qdy_row, qw.q, [&](int64_t kb, int64_t c) { return qw.s[kb * CB + c / 128]; }, n, R, C, dx_want, true);
  emulate(qdyt, qx_col.q, [&](int64_t kb, int64_t c) { return qx_col.s[kb * C + c]; }, R, n, C, dw_want, true);

  for (Simd s : levels()) {
    set_simd_level(s);
    SCOPED_TRACE(simd_name(s));
    std::vector<float> y(static_cast<size_t>(n * R)), dx = dx0, dw = dw0;
    linear_fwd(GemmPrecision::FP8, x.data(), n, w.data(), R, C, y.data());
    expect_bits(y, y_want, "forward");
    linear_bwd(GemmPrecision::FP8, x.data(), dy.data(), n, w.data(), R, C, dw.data(), dx.data(), true);
    expect_bits(dx, dx_want, "dgrad");
    expect_bits(dw, dw_want, "wgrad");
  }
}

// A frozen weight passes no dW (dsv3 train --mtp-only with V3's shared MTP head): the input
// gradient must be the same bits as with one.
TEST(LowP, LinearBackwardWithoutWeightGradient) {
  OpsState keep;
  std::mt19937 rng(5);
  const int64_t n = 19, R = 130, C = 140;
  const std::vector<float> x = random_vec(n * C, rng), w = random_vec(R * C, rng), dy = random_vec(n * R, rng);
  for (GemmPrecision p : {GemmPrecision::F32, GemmPrecision::BF16, GemmPrecision::FP8}) {
    SCOPED_TRACE(static_cast<int>(p));
    std::vector<float> dw(static_cast<size_t>(R * C), 0.0f), dx_with(static_cast<size_t>(n * C)), dx_without(dx_with.size());
    linear_bwd(p, x.data(), dy.data(), n, w.data(), R, C, dw.data(), dx_with.data(), false);
    linear_bwd(p, x.data(), dy.data(), n, w.data(), R, C, nullptr, dx_without.data(), false);
    expect_bits(dx_without, dx_with, "dgrad without dW");
    EXPECT_NE(std::count(dw.begin(), dw.end(), 0.0f), static_cast<std::ptrdiff_t>(dw.size())) << "dW was computed";
  }
}

TEST(LowP, Bf16LinearRoundsEveryGemmInput) {
  OpsState keep;
  std::mt19937 rng(4);
  const int64_t n = 37, R = 70, C = 129;
  const std::vector<float> x = random_vec(n * C, rng), w = random_vec(R * C, rng), dy = random_vec(n * R, rng);
  auto bf = [](float v) {  // round to nearest even at bit 16, written out
    const uint32_t u = std::bit_cast<uint32_t>(v), low = u & 0xffff, keep_bits = u & 0xffff0000u;
    const bool up = low > 0x8000 || (low == 0x8000 && (u & 0x10000));
    return std::bit_cast<float>(keep_bits + (up ? 0x10000u : 0));
  };
  // Products of BF16 values are exact in fp32; sums in double bound the fp32 GEMM's error.
  std::vector<double> y(n * R, 0), dx(n * C, 0), dw(R * C, 0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) {
        y[t * R + r] += double(bf(x[t * C + c])) * bf(w[r * C + c]);
        dx[t * C + c] += double(bf(dy[t * R + r])) * bf(w[r * C + c]);
        dw[r * C + c] += double(bf(dy[t * R + r])) * bf(x[t * C + c]);
      }
  std::vector<float> gy(n * R), gdx(n * C), gdw(R * C, 0.0f);
  linear_fwd(GemmPrecision::BF16, x.data(), n, w.data(), R, C, gy.data());
  linear_bwd(GemmPrecision::BF16, x.data(), dy.data(), n, w.data(), R, C, gdw.data(), gdx.data(), false);
  // Without the rounding the fp32 results sit ~1e-3 away; with it, at fp32 summation error.
  auto close = [](const std::vector<float>& g, const std::vector<double>& e) {
    double d = 0;
    for (size_t i = 0; i < g.size(); ++i) d = std::max(d, std::fabs(g[i] - e[i]));
    return d;
  };
  EXPECT_LT(close(gy, y), 1e-4);
  EXPECT_LT(close(gdx, dx), 1e-4);
  EXPECT_LT(close(gdw, dw), 1e-4);
  std::vector<float> f32y(n * R);
  linear_fwd(GemmPrecision::F32, x.data(), n, w.data(), R, C, f32y.data());
  EXPECT_GT(close(f32y, y), 1e-3) << "the fp32 path should differ from the BF16 GEMM";
  for (Simd s : levels()) {
    set_simd_level(s);
    std::vector<float> r(x.size());
    round_bf16(x.data(), r.data(), n * C);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(r[i], bf(x[i])) << simd_name(s);
  }
  const float ties[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};  // halfway: to even
  float out[2];
  round_bf16(ties, out, 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 1.0f + 0x1p-6f);
  EXPECT_THROW(parse_gemm_precision("fp16"), Error);
}

}  // namespace
}  // namespace dsv3::ops
