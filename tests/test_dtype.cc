// Element type conversions (core/dtype.h) and FP8 block quantisation (core/fp8_block.h), checked
// against independent references: closed-form minifloat values computed in double with ldexp,
// torch's documented float8_e4m3fn values, the compiler's own _Float16 conversions, and a
// brute-force nearest-value search over the decode table.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fp8_block.h"
#include "core/tensor.h"

namespace dsv3 {
namespace {

float bits_f(uint32_t u) { return std::bit_cast<float>(u); }

// Closed-form value of a minifloat code: (-1)^s * 2^(e-bias) * (1 + m/2^mbits), subnormal for e == 0.
// Returns NaN/inf per the format's special codes.
double minifloat_ref(uint32_t code, int ebits, int mbits, int bias, bool fn_style) {
  const bool neg = (code >> (ebits + mbits)) & 1;
  const int e = static_cast<int>((code >> mbits) & ((1u << ebits) - 1));
  const int m = static_cast<int>(code & ((1u << mbits) - 1));
  const int emax = (1 << ebits) - 1;
  double v;
  if (fn_style && e == emax && m == (1 << mbits) - 1) return std::numeric_limits<double>::quiet_NaN();
  if (!fn_style && e == emax) {
    if (m) return std::numeric_limits<double>::quiet_NaN();
    v = std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    v = std::ldexp(static_cast<double>(m), 1 - bias - mbits);
  } else {
    v = std::ldexp(static_cast<double>((1 << mbits) + m), e - bias - mbits);
  }
  return neg ? -v : v;
}

// ---------------------------------------------------------------- E4M3

TEST(E4M3, DecodeAll256MatchesFormula) {
  for (uint32_t c = 0; c < 256; ++c) {
    const double want = minifloat_ref(c, 4, 3, 7, true);
    const float got = e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << "code " << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;  // -0 for 0x80
    }
  }
}

TEST(E4M3, KnownTorchValues) {
  // torch.tensor([...], dtype=torch.uint8).view(torch.float8_e4m3fn).float()
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), 0x1p-9f);   // smallest subnormal
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * 0x1p-9f);  // largest subnormal
  EXPECT_EQ(e4m3_to_f32(0x08), 0x1p-6f);   // smallest normal
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_f32(0x40), 2.0f);
  EXPECT_EQ(e4m3_to_f32(0x78), 256.0f);    // e = 15 is a normal exponent in e4m3fn
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
  EXPECT_EQ(kE4M3Max, 448.0f);
}

TEST(E4M3, RoundTripEveryCode) {
  for (uint32_t c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    EXPECT_EQ(f32_to_e4m3(e4m3_to_f32(static_cast<uint8_t>(c))), c) << "code " << c;
  }
}

// Every pair of adjacent representable magnitudes: the exact midpoint goes to the even code,
// one float ulp either side goes to the nearer value. Both signs.
TEST(E4M3, RoundToNearestEvenAtEveryMidpoint) {
  int checked = 0;
  for (uint32_t c = 0; c < 0x7e; ++c) {
    const double a = minifloat_ref(c, 4, 3, 7, true), b = minifloat_ref(c + 1, 4, 3, 7, true);
    const float mid = static_cast<float>((a + b) / 2);  // exact: needs 5 significant bits
    ASSERT_EQ(static_cast<double>(mid), (a + b) / 2);
    const uint32_t even = (c & 1) ? c + 1 : c;
    for (int s = 0; s < 2; ++s) {
      const float sg = s ? -1.0f : 1.0f;
      const uint32_t sb = s ? 0x80 : 0;
      EXPECT_EQ(f32_to_e4m3(sg * mid), sb | even) << "midpoint of codes " << c << "," << c + 1;
      EXPECT_EQ(f32_to_e4m3(sg * std::nextafter(mid, 0.0f)), sb | c) << "below midpoint of " << c;
      EXPECT_EQ(f32_to_e4m3(sg * std::nextafter(mid, 1e9f)), sb | (c + 1)) << "above midpoint of " << c;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 126);
}

TEST(E4M3, SaturatesAndKeepsNaN) {
  const float big[] = {448.0f, 449.0f, 464.0f, 480.0f, 1e6f, 3.0e38f, std::numeric_limits<float>::infinity()};
  for (float v : big) {
    EXPECT_EQ(f32_to_e4m3(v), 0x7e) << v;
    EXPECT_EQ(f32_to_e4m3(-v), 0xfe) << v;
  }
  EXPECT_EQ(f32_to_e4m3(std::nextafter(448.0f, 0.0f)), 0x7e);  // rounds to 448 anyway
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_EQ(f32_to_e4m3(-std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::signaling_NaN()) & 0x7f, 0x7f);
  // Tiny values: half the smallest subnormal ties to 0 (even); anything above goes up.
  EXPECT_EQ(f32_to_e4m3(0x1p-10f), 0x00);
  EXPECT_EQ(f32_to_e4m3(std::nextafter(0x1p-10f, 1.0f)), 0x01);
  EXPECT_EQ(f32_to_e4m3(1e-30f), 0x00);
  EXPECT_EQ(f32_to_e4m3(-1e-30f), 0x80);
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::denorm_min()), 0x00);
}

// Random floats: the encoder picks a nearest representable value (ties: even code).
TEST(E4M3, RandomValuesEncodeToNearest) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-14, 10);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::ldexp(mant(rng), ex(rng)) * ((i & 1) ? -1.0f : 1.0f);
    const uint8_t q = f32_to_e4m3(x);
    const double got = e4m3_to_f32(q);
    const double err = std::fabs(got - x);
    for (uint32_t c = 0; c < 256; ++c) {
      if ((c & 0x7f) == 0x7f) continue;
      const double d = std::fabs(minifloat_ref(c, 4, 3, 7, true) - x);
      if (std::fabs(x) < 448.0) {
        ASSERT_LE(err, d) << "x=" << x << " code " << int(q) << " vs " << c;
      }
    }
  }
}

// ---------------------------------------------------------------- E5M2

TEST(E5M2, DecodeAll256MatchesFormula) {
  for (uint32_t c = 0; c < 256; ++c) {
    const double want = minifloat_ref(c, 5, 2, 15, false);
    const float got = e5m2_to_f32(static_cast<uint8_t>(c));
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << c;
    else EXPECT_EQ(static_cast<double>(got), want) << c;
  }
  EXPECT_EQ(e5m2_to_f32(0x7b), 57344.0f);
  EXPECT_EQ(e5m2_to_f32(0x01), 0x1p-16f);
  EXPECT_EQ(e5m2_to_f32(0x04), 0x1p-14f);
  EXPECT_TRUE(std::isinf(e5m2_to_f32(0x7c)));
  EXPECT_TRUE(std::isnan(e5m2_to_f32(0x7d)));
}

TEST(E5M2, RoundTripRoundingAndSaturation) {
  for (uint32_t c = 0; c < 256; ++c) {
    const uint32_t mag = c & 0x7f;
    if (mag > 0x7c) continue;  // NaN
    const uint8_t back = f32_to_e5m2(e5m2_to_f32(static_cast<uint8_t>(c)));
    if (mag == 0x7c) EXPECT_EQ(back, (c & 0x80) | 0x7b) << "inf saturates";  // header: saturating encoder
    else EXPECT_EQ(back, c) << c;
  }
  for (uint32_t c = 0; c < 0x7b; ++c) {
    const double a = minifloat_ref(c, 5, 2, 15, false), b = minifloat_ref(c + 1, 5, 2, 15, false);
    const float mid = static_cast<float>((a + b) / 2);
    const uint32_t even = (c & 1) ? c + 1 : c;
    EXPECT_EQ(f32_to_e5m2(mid), even) << c;
    EXPECT_EQ(f32_to_e5m2(-mid), 0x80 | even) << c;
    EXPECT_EQ(f32_to_e5m2(std::nextafter(mid, 0.0f)), c) << c;
    EXPECT_EQ(f32_to_e5m2(std::nextafter(mid, 1e9f)), c + 1) << c;
  }
  EXPECT_EQ(f32_to_e5m2(61440.0f), 0x7b);
  EXPECT_EQ(f32_to_e5m2(1e30f), 0x7b);
  EXPECT_EQ(f32_to_e5m2(-std::numeric_limits<float>::infinity()), 0xfb);
  EXPECT_TRUE(std::isnan(e5m2_to_f32(f32_to_e5m2(std::numeric_limits<float>::quiet_NaN()))));
}

// ---------------------------------------------------------------- BF16

TEST(BF16, DecodeIsUpperHalfOfFloat) {
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(bf16_to_f32(0x0001), 0x1p-133f);  // smallest subnormal
  EXPECT_TRUE(std::isinf(bf16_to_f32(0x7f80)));
}

TEST(BF16, RoundToNearestEvenAllMidpoints) {
  // For every finite bf16 h (both signs) the float halfway to h+1 goes to the even one of the two.
  for (uint32_t h = 0; h < 0x7f80; ++h) {
    const uint32_t even = (h & 1) ? h + 1 : h;  // 0x7f7f's tie goes to 0x7f80 = inf, as in IEEE
    for (uint32_t s : {0u, 0x8000u}) {
      const uint32_t base = (h | s) << 16;
      ASSERT_EQ(f32_to_bf16(bits_f(base | 0x8000)), even | s) << std::hex << h;
      ASSERT_EQ(f32_to_bf16(bits_f(base | 0x7fff)), h | s) << std::hex << h;
      ASSERT_EQ(f32_to_bf16(bits_f(base | 0x8001)), (h + 1) | s) << std::hex << h;
      ASSERT_EQ(f32_to_bf16(bits_f(base)), h | s) << std::hex << h;
    }
  }
}

TEST(BF16, NaNStaysNaN) {
  // Payload only in the low 16 bits: truncation would give infinity.
  for (uint32_t u : {0x7f800001u, 0xff800001u, 0x7fc00000u, 0x7fffffffu, 0x7f80ffffu}) {
    const uint16_t h = f32_to_bf16(bits_f(u));
    EXPECT_TRUE(std::isnan(bf16_to_f32(h))) << std::hex << u;
    EXPECT_EQ(h & 0x8000, (u >> 16) & 0x8000);
  }
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up past the last finite
}

// ---------------------------------------------------------------- F16

TEST(F16, AllCodesDecodeAndRoundTrip) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const double want = minifloat_ref(c, 5, 10, 15, false);
    _Float16 h;
    const uint16_t c16 = static_cast<uint16_t>(c);
    std::memcpy(&h, &c16, 2);
    const float got = f16_to_f32(c16);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << c;
      ASSERT_TRUE(std::isnan(f16_to_f32(f32_to_f16(got)))) << c;
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), want) << c;
    ASSERT_EQ(got, static_cast<float>(h)) << c;  // the compiler's conversion agrees
    ASSERT_EQ(std::signbit(got), (c & 0x8000) != 0) << c;
    ASSERT_EQ(f32_to_f16(got), c) << c;
  }
}

TEST(F16, RoundToNearestEvenMidpointsAndCompilerAgreement) {
  for (uint32_t c = 0; c < 0x7c00; ++c) {  // c+1 may be inf (0x7c00)
    const double a = minifloat_ref(c, 5, 10, 15, false), b = minifloat_ref(c + 1, 5, 10, 15, false);
    const float mid = std::isinf(b) ? 65520.0f : static_cast<float>((a + b) / 2);
    const uint32_t even = (c & 1) ? c + 1 : c;
    ASSERT_EQ(f32_to_f16(mid), even) << c;
    ASSERT_EQ(f32_to_f16(-mid), 0x8000 | even) << c;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, 0.0f)), c) << c;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, 1e9f)), c + 1) << c;
  }
  // Random floats against the compiler's float -> _Float16 (IEEE round to nearest even).
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> u;
  for (int i = 0; i < 200000; ++i) {
    const uint32_t r = u(rng);  // |f| in 2^-26 .. 2^17: zero, subnormals, normals, overflow
    const float f = bits_f((r & 0x807fffffu) | ((101u + (r >> 23) % 44u) << 23));
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &h, 2);
    ASSERT_EQ(f32_to_f16(f), want) << std::hexfloat << f;
  }
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);  // half the smallest subnormal: tie to 0
}

// ---------------------------------------------------------------- dtype table and bulk conversion

TEST(DType, NamesSizesAndParsing) {
  const std::pair<const char*, size_t> want[] = {{"BOOL", 1}, {"U8", 1},   {"I8", 1},      {"I16", 2},
                                                 {"I32", 4},  {"I64", 8},  {"F16", 2},     {"BF16", 2},
                                                 {"F32", 4},  {"F64", 8},  {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : want) {
    auto t = parse_dtype(name);
    ASSERT_TRUE(t.has_value()) << name;
    EXPECT_STREQ(dtype_name(*t), name);
    EXPECT_EQ(dtype_size(*t), size) << name;
  }
  EXPECT_FALSE(parse_dtype("bf16").has_value());
  EXPECT_FALSE(parse_dtype("F8_E4M3FN").has_value());
  EXPECT_FALSE(parse_dtype("").has_value());
  EXPECT_TRUE(dtype_is_float(DType::F8_E4M3));
  EXPECT_FALSE(dtype_is_float(DType::I32));
}

TEST(DType, BulkConversions) {
  const std::vector<float> v = {0.0f, 1.0f, -2.5f, 0.1f, 300.0f, -1e-3f};
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::F8_E5M2}) {
    std::vector<uint8_t> buf(v.size() * dtype_size(t));
    from_f32(t, v.data(), buf.data(), v.size());
    std::vector<float> back(v.size());
    to_f32(t, buf.data(), back.data(), v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      float want;
      switch (t) {
        case DType::BF16: want = bf16_to_f32(f32_to_bf16(v[i])); break;
        case DType::F16: want = f16_to_f32(f32_to_f16(v[i])); break;
        case DType::F8_E4M3: want = e4m3_to_f32(f32_to_e4m3(v[i])); break;
        case DType::F8_E5M2: want = e5m2_to_f32(f32_to_e5m2(v[i])); break;
        default: want = v[i];
      }
      EXPECT_EQ(back[i], want) << dtype_name(t) << " " << i;
    }
  }
  float f = 0;
  int32_t i32 = 0;
  EXPECT_THROW(to_f32(DType::I32, &i32, &f, 1), Error);
  EXPECT_THROW(from_f32(DType::I64, &f, &i32, 1), Error);
}

// ---------------------------------------------------------------- FP8 block quantisation

// Nearest E4M3 code by exhaustive search; ties to the even code. Saturates beyond 448.
uint8_t nearest_e4m3(float x) {
  if (x >= 448.0f) return 0x7e;
  if (x <= -448.0f) return 0xfe;
  int best = -1;
  double bd = 1e300;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    if (std::signbit(x) != ((c & 0x80) != 0)) continue;
    const double d = std::fabs(minifloat_ref(c, 4, 3, 7, true) - x);
    if (d < bd || (d == bd && (c & 1) == 0)) bd = d, best = c;
  }
  return static_cast<uint8_t>(best);
}

void check_stripe(int64_t r, int64_t cols, int64_t ld, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> src(static_cast<size_t>(r * ld));
  for (auto& x : src) x = nd(rng) * 0.05f;
  // A block of zeros (amax floored at 1e-12) when there are at least two column blocks.
  if (cols > 128)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 128; j < std::min<int64_t>(cols, 256); ++j) src[static_cast<size_t>(i * ld + j)] = 0.0f;
  const int64_t nb = (cols + 127) / 128;
  std::vector<uint8_t> dst(static_cast<size_t>(r * cols) + 64, 0xAA);  // canary after [r, cols]
  std::vector<float> scale(static_cast<size_t>(nb) + 4, -7.0f);
  quantize_fp8_stripe(src.data(), r, cols, ld, dst.data(), scale.data());
  for (int64_t b = 0; b < nb; ++b) {
    float amax = 0;
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = b * 128; j < std::min(cols, (b + 1) * 128); ++j)
        amax = std::max(amax, std::fabs(src[static_cast<size_t>(i * ld + j)]));
    const float s = std::max(amax, 1e-12f) / 448.0f;
    ASSERT_EQ(scale[static_cast<size_t>(b)], s) << "block " << b;
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = b * 128; j < std::min(cols, (b + 1) * 128); ++j)
        ASSERT_EQ(dst[static_cast<size_t>(i * cols + j)], nearest_e4m3(src[static_cast<size_t>(i * ld + j)] / s))
            << "r=" << r << " cols=" << cols << " at " << i << "," << j;
  }
  for (size_t k = static_cast<size_t>(r * cols); k < dst.size(); ++k) ASSERT_EQ(dst[k], 0xAA) << "overrun";
  for (size_t k = static_cast<size_t>(nb); k < scale.size(); ++k) ASSERT_EQ(scale[k], -7.0f) << "scale overrun";
}

TEST(Fp8Block, QuantizeStripePartialBlocks) {
  check_stripe(128, 256, 256, 1);  // whole blocks
  check_stripe(96, 300, 300, 2);   // r < 128, cols not a multiple of 128
  check_stripe(1, 1, 1, 3);
  check_stripe(37, 130, 200, 4);   // row stride larger than cols
  check_stripe(128, 96, 96, 5);    // a single partial column block
}

TEST(Fp8Block, DequantizeRowsUsesBlockScales) {
  // [rows=200, cols=150]: scale grid [2, 2] with partial edge blocks; rows 100..179 cross a block row.
  const int64_t rows = 200, cols = 150;
  std::vector<uint8_t> q(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<uint8_t>((i * 37) % 256);
  const float sc[4] = {0.5f, 2.0f, 0.25f, 8.0f};
  const int64_t r0 = 100, r = 80;
  std::vector<float> out(static_cast<size_t>(r * cols));
  dequantize_fp8_rows(q.data(), sc, cols, r0, r, out.data());
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t row = r0 + i;
      const uint8_t c = q[static_cast<size_t>(row * cols + j)];
      const double want = minifloat_ref(c, 4, 3, 7, true) * sc[(row / 128) * 2 + j / 128];
      const float got = out[static_cast<size_t>(i * cols + j)];
      if (std::isnan(want)) ASSERT_TRUE(std::isnan(got));
      else ASSERT_EQ(static_cast<double>(got), want) << row << "," << j;
    }
}

}  // namespace
}  // namespace dsv3
