// Every op, every weight dtype, every SIMD level of this CPU against the scalar reference
// (ops::ref, double accumulation) on shapes that are not multiples of the block sizes; plus
// exact FP8 dequantisation over all 256 codes and thread-count invariance.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "ops/kernels.h"
#include "ops/ops.h"
#include "testing.h"

namespace dsv3::ops {
namespace {

// A full weight matrix [rows, cols] owning its storage, in any of the supported dtypes.
struct TestWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> scale;  // FP8: [ceil(rows/128), ceil(cols/128)]
  std::vector<uint16_t> group_scale;  // I4: [rows, ceil(cols/group)], BF16 or F16
  WeightView view;
};

TestWeight random_weight(DType dt, int64_t rows, int64_t cols, std::mt19937& rng) {
  TestWeight w;
  std::normal_distribution<float> nd(0.0f, 0.5f);
  const size_t n = static_cast<size_t>(rows * cols);
  w.bytes.resize(n * dtype_size(dt));
  w.view.dtype = dt;
  w.view.rows = rows;
  w.view.cols = cols;
  if (dt == DType::I4) {
    // Group 32 with BF16 scales or 128 with F16 scales (both appear in published checkpoints);
    // every nibble value, scales around amax/7.5 of N(0, 0.5).
    w.view.group = (rows + cols) % 2 ? 32 : 128;
    w.view.group_scale_dtype = w.view.group == 32 ? DType::BF16 : DType::F16;
    w.bytes.resize(static_cast<size_t>(rows * w.view.packed_row_bytes()));
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : w.bytes) b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> sd(0.05f, 0.3f);
    w.group_scale.resize(static_cast<size_t>(rows * w.view.group_cols()));
    for (auto& g : w.group_scale) g = w.view.group == 32 ? f32_to_bf16(sd(rng)) : f32_to_f16(sd(rng));
    w.view.group_scale = w.group_scale.data();
  } else if (dt == DType::F8_E4M3) {
    std::uniform_int_distribution<int> code(0, 255);
    for (auto& b : w.bytes) {
      do b = static_cast<uint8_t>(code(rng));
      while ((b & 0x7f) == 0x7f);  // NaN codes are tested separately
    }
    std::uniform_real_distribution<float> sd(2e-4f, 4e-3f);
    w.scale.resize(static_cast<size_t>(((rows + 127) / 128) * ((cols + 127) / 128)));
    for (auto& s : w.scale) s = sd(rng);
  } else {
    std::vector<float> f(n);
    for (auto& v : f) v = nd(rng);
    from_f32(dt, f.data(), w.bytes.data(), n);
  }
  w.view.data = w.bytes.data();
  w.view.scale_inv = dt == DType::F8_E4M3 ? w.scale.data() : nullptr;
  return w;
}

using dsv3::testing::random_vec;

// Max |a-b| relative to max |ref| (norm-wise: fp32 reassociation errors scale with the sums).
double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double mx = 0, err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    mx = std::max(mx, std::fabs(double(ref[i])));
    err = std::max(err, std::fabs(double(got[i]) - ref[i]));
  }
  return mx > 0 ? err / mx : err;
}

std::vector<Simd> fast_levels() {
  std::vector<Simd> v;
  for (Simd s : {Simd::Avx2, Simd::Avx512})
    if (simd_supported(s)) v.push_back(s);
  return v;
}

using dsv3::testing::OpsState;

constexpr DType kDtypes[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::I4};

struct Case {
  int64_t full_rows, cols, row0, rows, n;
};
// Rows/cols/tokens that are not multiples of 128/16/8; row slices that straddle FP8 blocks.
constexpr Case kCases[] = {
    {576, 256, 0, 576, 1},  {576, 200, 0, 576, 3},   {96, 129, 0, 96, 17},  {130, 256, 0, 130, 64},
    {256, 512, 64, 64, 1},  {256, 512, 100, 130, 5}, {320, 129, 63, 200, 9}, {130, 7, 1, 129, 40},
    {33, 300, 0, 33, 8},    {576, 384, 0, 576, 33},  {1, 16, 0, 1, 2},      {130, 131, 3, 127, 100},
    {130, 300, 2, 101, 2},   // two tokens: the GEMV's 4-row groups (AVX-512) and a row left over
    {20, 7000, 3, 17, 200},  // wide enough that the tiled GEMM splits the tokens into super-blocks
};

TEST(Ops, MatmulMatchesReference) {
  OpsState keep;
  std::mt19937 rng(1);
  for (Simd s : fast_levels())
    for (DType dt : kDtypes)
      for (const Case& c : kCases)
        for (bool accumulate : {false, true}) {
          set_simd_level(s);
          TestWeight full = random_weight(dt, c.full_rows, c.cols, rng);
          const WeightView w = full.view.slice_rows(c.row0, c.rows);
          const int64_t ldx = c.cols + 3, ldy = c.rows + 5;  // strided rows
          const auto x = random_vec(static_cast<size_t>(c.n * ldx), rng);
          const auto y0 = random_vec(static_cast<size_t>(c.n * ldy), rng);
          std::vector<float> got = y0, want = y0;
          matmul(x.data(), c.n, ldx, w, got.data(), ldy, accumulate);
          ref::matmul(x.data(), c.n, ldx, w, want.data(), ldy, accumulate);
          // Padding between rows must be untouched.
          for (int64_t t = 0; t < c.n; ++t)
            for (int64_t j = c.rows; j < ldy; ++j) ASSERT_EQ(got[t * ldy + j], y0[t * ldy + j]);
          EXPECT_LT(rel_err(got, want), 1e-5) << simd_name(s) << " " << dtype_name(dt) << " rows " << c.rows
                                              << " cols " << c.cols << " row0 " << c.row0 << " n " << c.n
                                              << " acc " << accumulate;
        }
}

// The BF16 prefill path: the vdpbf16ps GEMM equals the scalar emulation bit for bit for every
// weight dtype and shape above with at least kPrefillBf16MinTokens tokens, stays within BF16
// rounding of fp32, and leaves smaller calls exactly fp32.
TEST(Ops, Bf16PrefillEqualsItsEmulation) {
  OpsState keep;
  if (!simd_supported(Simd::Avx512) || !__builtin_cpu_supports("avx512bf16")) {
    EXPECT_THROW(set_prefill_bf16(true), Error);
    GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  }
  set_simd_level(Simd::Avx2);
  EXPECT_THROW(set_prefill_bf16(true), Error);  // the avx2 kernels have no BF16 GEMM
  set_simd_level(Simd::Avx512);
  std::mt19937 rng(11);
  for (DType dt : kDtypes)
    for (const Case& c : kCases)
      for (bool accumulate : {false, true}) {
        TestWeight full = random_weight(dt, c.full_rows, c.cols, rng);
        const WeightView w = full.view.slice_rows(c.row0, c.rows);
        const int64_t ldx = c.cols + 3, ldy = c.rows + 5;
        const auto x = random_vec(static_cast<size_t>(c.n * ldx), rng);
        const auto y0 = random_vec(static_cast<size_t>(c.n * ldy), rng);
        std::vector<float> fp32 = y0, got = y0, want = y0;
        matmul(x.data(), c.n, ldx, w, fp32.data(), ldy, accumulate);
        set_prefill_bf16(true);
        matmul(x.data(), c.n, ldx, w, got.data(), ldy, accumulate);
        ref::matmul(x.data(), c.n, ldx, w, want.data(), ldy, accumulate);
        set_prefill_bf16(false);
        const std::string where = std::string(dtype_name(dt)) + " rows " + std::to_string(c.rows) + " cols " +
                                  std::to_string(c.cols) + " n " + std::to_string(c.n);
        if (c.n < kPrefillBf16MinTokens) {
          ASSERT_EQ(got, fp32) << where << ": a call of fewer tokens stays fp32";
          continue;
        }
        for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << where << " i " << i;
        EXPECT_LT(rel_err(got, fp32), 2e-2) << where;
        EXPECT_GT(rel_err(got, fp32), 0.0) << where << ": the BF16 path did not run";
      }
}

TEST(Ops, MatmulTransposedMatchesReference) {
  OpsState keep;
  std::mt19937 rng(2);
  for (Simd s : fast_levels())
    for (DType dt : kDtypes)
      for (const Case& c : kCases) {
        set_simd_level(s);
        TestWeight full = random_weight(dt, c.full_rows, c.cols, rng);
        // FP8 takes the register-blocked path only when known NaN-free (nan_state 1).
        for (int8_t state : {int8_t{0}, int8_t{1}}) {
          WeightView w = full.view.slice_rows(c.row0, c.rows);
          w.nan_state = state;
          const int64_t ldx = c.rows + 2, ldy = c.cols + 1;
          const auto x = random_vec(static_cast<size_t>(c.n * ldx), rng);
          std::vector<float> got(static_cast<size_t>(c.n * ldy), 7.0f), want = got;
          matmul_t(x.data(), c.n, ldx, w, got.data(), ldy);
          ref::matmul_t(x.data(), c.n, ldx, w, want.data(), ldy);
          EXPECT_LT(rel_err(got, want), 1e-5) << simd_name(s) << " " << dtype_name(dt) << " rows " << c.rows
                                              << " cols " << c.cols << " n " << c.n << " nan_state " << int(state);
        }
      }
}

// The FP8 GEMV scales x by a power of two chosen from max|x| (so that products stay out of the
// subnormal range); activations from 1e-30 to 1e30 must keep full precision.
TEST(Ops, Fp8GemvKeepsPrecisionAtExtremeActivations) {
  OpsState keep;
  std::mt19937 rng(5);
  TestWeight full = random_weight(DType::F8_E4M3, 130, 300, rng);
  for (Simd s : fast_levels())
    for (float mag : {1e-30f, 1e-12f, 1e-3f, 1.0f, 3e4f, 1e12f, 1e30f})
      for (int64_t n : {1, 3}) {
        set_simd_level(s);
        auto x = random_vec(static_cast<size_t>(n * 300), rng, mag);
        x[7] = 0.0f;  // zeros and one tiny outlier beside the large values
        x[11] = mag * 1e-20f;
        std::vector<float> got(static_cast<size_t>(n * 130)), want = got;
        matmul(x.data(), n, 300, full.view, got.data(), 130);
        ref::matmul(x.data(), n, 300, full.view, want.data(), 130);
        EXPECT_LT(rel_err(got, want), 1e-5) << simd_name(s) << " |x| ~ " << mag << " n " << n;
      }
}

// A batch gives bit for bit what the same matmuls give one by one, GEMV- and GEMM-sized jobs
// mixed (several GEMM-sized ones), some accumulating into their output.
TEST(Ops, MatmulBatchEqualsSeparateCalls) {
  OpsState keep;
  std::mt19937 rng(6);
  struct Spec {
    DType dt;
    int64_t rows, cols, n;
    bool acc;
  };
  const Spec specs[] = {{DType::F8_E4M3, 300, 256, 1, false}, {DType::BF16, 70, 256, 1, true},
                        {DType::F8_E4M3, 129, 200, 5, false}, {DType::F32, 33, 64, 40, false},
                        {DType::F8_E4M3, 64, 130, 8, true},   {DType::F16, 10, 48, 0, false},
                        {DType::F8_E4M3, 129, 200, 12, true}, {DType::BF16, 64, 256, 24, false},
                        {DType::F8_E4M3, 300, 384, 40, false}, {DType::I4, 129, 200, 3, true},
                        {DType::I4, 64, 256, 20, false}};
  for (Simd s : fast_levels())
    for (int threads : {1, 2, 3}) {
      set_simd_level(s);
      set_num_threads(threads);
      std::vector<TestWeight> ws;
      std::vector<std::vector<float>> xs, ys;
      for (const Spec& sp : specs) {
        ws.push_back(random_weight(sp.dt, sp.rows, sp.cols, rng));
        xs.push_back(random_vec(static_cast<size_t>(sp.n * sp.cols), rng));
        ys.push_back(random_vec(static_cast<size_t>(sp.n * sp.rows), rng));
      }
      std::vector<MatmulJob> jobs;
      std::vector<std::vector<float>> batched = ys, single = ys;
      for (size_t i = 0; i < std::size(specs); ++i) {
        const Spec& sp = specs[i];
        jobs.push_back({xs[i].data(), sp.n, sp.cols, ws[i].view, batched[i].data(), sp.rows, sp.acc});
        matmul(xs[i].data(), sp.n, sp.cols, ws[i].view, single[i].data(), sp.rows, sp.acc);
      }
      matmul_batch(jobs);
      for (size_t i = 0; i < std::size(specs); ++i)  // memcmp of an empty job's null data is UB
        EXPECT_TRUE(batched[i].empty() ||
                    std::memcmp(batched[i].data(), single[i].data(), batched[i].size() * 4) == 0)
            << simd_name(s) << " threads " << threads << " job " << i;
    }
}

// has_nan_codes sees one NaN code anywhere in a view and nothing outside it; a weight whose
// owner found NaN codes (nan_state -1) or did not check (0) still yields NaN for that row.
// The compressed-tensors pack-quantized layout, packed here as its pack_to_int32 documents it
// (value + 8 in bits 4i of int32 k for column 8k + i, rows padded with zero nibbles to a multiple
// of 8 columns): every kernel and the reference read back exactly q * scale.
// The int4 decode GEMV on AVX512_VNNI carries x in three int8 parts per 128 columns (about 21
// bits of each chunk's largest element): within 1e-5 of the exact reference, visibly not the
// float path's result (so it ran), and x with a NaN falls back to the float path (NaN out).
TEST(Ops, I4IntegerGemvMatchesReference) {
  OpsState keep;
  if (!simd_supported(Simd::Avx512)) GTEST_SKIP() << "no AVX-512";
  set_simd_level(Simd::Avx512);
  if (!int4_vnni_supported()) GTEST_SKIP() << "no AVX512_VNNI";
  std::mt19937 rng(11);
  for (int64_t cols : {128, 300, 1024, 2050})
    for (int64_t n : {1, 2}) {
      const int64_t rows = 42 + (cols % 2);  // rows + cols even: random_weight picks group 128
      TestWeight w = random_weight(DType::I4, rows, cols, rng);
      ASSERT_EQ(w.view.group, 128);
      auto x = random_vec(static_cast<size_t>(n * cols), rng);
      x[3] = 60.0f;                                                // an outlier in the first chunk
      for (int64_t c = 0; c < std::min<int64_t>(cols, 256); ++c)  // and a chunk of zeros after it
        if (c >= 128) x[static_cast<size_t>(c)] = 0.0f;
      std::vector<float> vnni(static_cast<size_t>(n * rows)), flt = vnni, want = vnni;
      set_int4_vnni(true);
      matmul(x.data(), n, cols, w.view, vnni.data(), rows);
      set_int4_vnni(false);
      matmul(x.data(), n, cols, w.view, flt.data(), rows);
      ref::matmul(x.data(), n, cols, w.view, want.data(), rows);
      const std::string where = "cols " + std::to_string(cols) + " n " + std::to_string(n);
      EXPECT_LT(rel_err(vnni, want), 1e-5) << where;
      EXPECT_LT(rel_err(flt, want), 1e-6) << where;
      EXPECT_NE(vnni, flt) << where << ": the integer path did not run";
      x[5] = std::numeric_limits<float>::quiet_NaN();
      set_int4_vnni(true);
      matmul(x.data(), n, cols, w.view, vnni.data(), rows);
      for (int64_t r = 0; r < rows; ++r) EXPECT_TRUE(std::isnan(vnni[static_cast<size_t>(r)])) << where << " row " << r;
    }
}

// x's int8 parts for the VNNI GEMV: the AVX-512 quantiser writes the scalar twin's bytes and unit,
// on chunks with ties at every rounding (multiples of 1/2 after scaling), an outlier, tiny and
// subnormal values, zeros, and random values.
TEST(Ops, VnniQuantizeEqualsItsScalarTwin) {
  if (!int4_vnni_supported()) GTEST_SKIP() << "no AVX512_VNNI";
  std::mt19937 rng(13);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<std::vector<float>> chunks;
  std::vector<float> c(128);
  for (int k = 0; k < 128; ++k) c[static_cast<size_t>(k)] = static_cast<float>(k - 64) * 0.5f;  // max 63.5: v = k'/... ties
  chunks.push_back(c);
  for (int k = 0; k < 128; ++k) c[static_cast<size_t>(k)] = nd(rng);
  c[7] = 60.0f;
  chunks.push_back(c);
  for (int k = 0; k < 128; ++k) c[static_cast<size_t>(k)] = nd(rng) * 1e-40f;  // subnormal
  chunks.push_back(c);
  chunks.emplace_back(128, 0.0f);
  chunks.emplace_back(128, -3.0f);
  for (int r = 0; r < 50; ++r) {
    for (int k = 0; k < 128; ++k) c[static_cast<size_t>(k)] = nd(rng) * std::ldexp(1.0f, r % 20 - 10);
    chunks.push_back(c);
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    std::vector<int8_t> want(3 * 128 + 64, 1), got(3 * 128 + 64, 2);
    float uw = -1, ug = -2;
    detail::quantize_vnni_chunk(chunks[i].data(), want.data(), &uw);
    detail::quantize_vnni_chunk_avx512(chunks[i].data(), got.data(), &ug);
    EXPECT_EQ(got, want) << "chunk " << i;
    EXPECT_EQ(std::bit_cast<uint32_t>(ug), std::bit_cast<uint32_t>(uw)) << "chunk " << i;
  }
}

TEST(Ops, I4ReadsThePackQuantizedLayout) {
  OpsState keep;
  std::mt19937 rng(12);
  const int64_t R = 5, C = 70, G = 32, KP = (C + 7) / 8, GC = (C + G - 1) / G;
  std::uniform_int_distribution<int> qd(-8, 7);
  std::vector<int> q(static_cast<size_t>(R * C));
  for (auto& v : q) v = qd(rng);
  std::vector<uint32_t> packed(static_cast<size_t>(R * KP), 0u);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c)
      packed[static_cast<size_t>(r * KP + c / 8)] |= static_cast<uint32_t>(q[static_cast<size_t>(r * C + c)] + 8) << (4 * (c % 8));
  std::vector<float> scale(static_cast<size_t>(R * GC));
  for (size_t i = 0; i < scale.size(); ++i) scale[i] = 0.25f * static_cast<float>(i + 1);
  WeightView w;
  w.data = packed.data();  // little-endian int32s, as safetensors stores them
  w.dtype = DType::I4;
  w.rows = R;
  w.cols = C;
  w.group = G;
  w.group_scale = scale.data();
  w.group_scale_dtype = DType::F32;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c)
      ASSERT_EQ(ref::weight_at(w, r, c), static_cast<float>(q[static_cast<size_t>(r * C + c)]) * scale[static_cast<size_t>(r * GC + c / G)]);
  // x = one-hot rows: y = the dequantised columns, through the GEMV (1 token) and the GEMM (C tokens).
  std::vector<float> x(static_cast<size_t>(C * C), 0.0f);
  for (int64_t c = 0; c < C; ++c) x[static_cast<size_t>(c * C + c)] = 1.0f;
  for (Simd s : fast_levels())
    for (int64_t n : {int64_t{1}, C}) {
      set_simd_level(s);
      for (int64_t c0 = 0; c0 < C; c0 += n) {
        std::vector<float> y(static_cast<size_t>(n * R));
        matmul(x.data() + c0 * C, n, C, w, y.data(), R);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < R; ++r)
            ASSERT_EQ(y[static_cast<size_t>(t * R + r)], ref::weight_at(w, r, c0 + t)) << simd_name(s) << " n " << n;
      }
    }
}

TEST(Ops, HasNanCodes) {
  OpsState keep;
  std::mt19937 rng(8);
  TestWeight full = random_weight(DType::F8_E4M3, 130, 300, rng);
  for (Simd s : {Simd::Scalar, Simd::Avx2, Simd::Avx512}) {
    if (!simd_supported(s)) continue;
    set_simd_level(s);
    full.bytes[129 * 300 + 299] = 0x12;
    EXPECT_FALSE(has_nan_codes(full.view)) << simd_name(s);
    full.bytes[129 * 300 + 299] = 0xff;  // last element
    EXPECT_TRUE(has_nan_codes(full.view)) << simd_name(s);
    EXPECT_FALSE(has_nan_codes(full.view.slice_rows(0, 129))) << simd_name(s);
    EXPECT_TRUE(has_nan_codes(full.view.slice_rows(129, 1))) << simd_name(s);
    for (int8_t state : {int8_t{0}, int8_t{-1}}) {
      WeightView w = full.view;
      w.nan_state = state;
      std::vector<float> x(300, 1.0f), y(130);
      matmul(x.data(), 1, 300, w, y.data(), 130);
      EXPECT_TRUE(std::isnan(y[129])) << simd_name(s) << " state " << int(state);
      EXPECT_FALSE(std::isnan(y[128])) << simd_name(s) << " state " << int(state);
    }
  }
  TestWeight bf = random_weight(DType::BF16, 4, 8, rng);
  EXPECT_FALSE(has_nan_codes(bf.view));
}

// Every e4m3 code through every dequantising path must equal core's table exactly.
TEST(Ops, Fp8DequantIsExactForAllCodes) {
  OpsState keep;
  // W [256, 32]: row i holds code i everywhere. x one-hot on column 0, so y[t, i] is
  // exactly the decoded value (the other products are +-0, or NaN for NaN codes).
  constexpr int64_t R = 256, C = 32;
  std::vector<uint8_t> codes(R * C);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) codes[i * C + j] = static_cast<uint8_t>(i);
  // Scales 1 and 1024 (exact in fp32 products): large scales take another dequantising route.
  for (const float scale : {1.0f, 1024.0f}) {
    std::vector<float> ones(4, scale);  // scale_inv [2, 1]
    WeightView w;
    w.data = codes.data();
    w.dtype = DType::F8_E4M3;
    w.rows = R;
    w.cols = C;
    w.scale_inv = ones.data();
    auto same = [](float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; };
    for (Simd s : fast_levels()) {
      set_simd_level(s);
      for (int64_t n : {1, 3, 20}) {  // GEMV and tiled paths
        std::vector<float> x(n * C, 0.0f), y(n * R);
        for (int64_t t = 0; t < n; ++t) x[t * C] = 1.0f;
        matmul(x.data(), n, C, w, y.data(), R);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t i = 0; i < R; ++i)
            ASSERT_TRUE(same(y[t * R + i], e4m3_to_f32(static_cast<uint8_t>(i)) * scale))
                << simd_name(s) << " scale " << scale << " n " << n << " code " << i << " got " << y[t * R + i];
      }
      // matmul_t with W [1, 256] holding all codes in one row: y = 1 * W.
      WeightView row;
      std::vector<uint8_t> all(256);
      for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
      row.data = all.data();
      row.dtype = DType::F8_E4M3;
      row.rows = 1;
      row.cols = 256;
      row.scale_inv = ones.data();
      const float one = 1.0f;  // y = 1 * W
      std::vector<float> y(256);
      matmul_t(&one, 1, 1, row, y.data(), 256);
      for (int i = 0; i < 256; ++i)
        ASSERT_TRUE(same(y[i], e4m3_to_f32(static_cast<uint8_t>(i)) * scale)) << "scale " << scale << " code " << i;
    }
  }
}

TEST(Ops, ResultsDoNotDependOnThreadCount) {
  OpsState keep;
  std::mt19937 rng(3);
  for (Simd s : fast_levels())
    for (DType dt : {DType::BF16, DType::F8_E4M3})
      for (int64_t n : {1, 5, 40}) {
        set_simd_level(s);
        TestWeight w = random_weight(dt, 700, 640, rng);
        const auto x = random_vec(static_cast<size_t>(n * 700), rng);
        std::vector<float> base;
        std::vector<float> base_t;
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          std::vector<float> y(n * 700), yt(n * 640);
          matmul(x.data(), n, 640, w.view, y.data(), 700);
          matmul_t(x.data(), n, 700, w.view, yt.data(), 640);
          if (base.empty()) {
            base = y;
            base_t = yt;
          } else {
            EXPECT_EQ(0, std::memcmp(base.data(), y.data(), y.size() * 4)) << simd_name(s) << " threads " << threads;
            EXPECT_EQ(0, std::memcmp(base_t.data(), yt.data(), yt.size() * 4)) << simd_name(s) << " threads " << threads;
          }
        }
      }
}

// A decode GEMV's output does not depend on the rows and tokens computed beside it: a row alone
// (one accumulator, one horizontal sum), among 8 to 16 rows of one token (sums 8 at a time,
// Avx512::hsum8) and among the rows of two equal tokens give the same bits. Column counts leave
// FP8 / I4 block and vector tails.
TEST(Ops, GemvRowDoesNotDependOnItsNeighbours) {
  OpsState keep;
  std::mt19937 rng(11);
  set_num_threads(1);
  for (Simd s : fast_levels())
    for (DType dt : {DType::F32, DType::BF16, DType::F8_E4M3, DType::I4})
      for (int64_t cols : {int64_t{96}, int64_t{200}, int64_t{300}}) {
        set_simd_level(s);
        TestWeight w = random_weight(dt, 19, cols, rng);
        auto x = random_vec(static_cast<size_t>(cols), rng);
        x.insert(x.end(), x.begin(), x.end());  // two equal tokens
        std::vector<float> y1(19), y2(2 * 19), row(1);
        matmul(x.data(), 1, cols, w.view, y1.data(), 19);
        matmul(x.data(), 2, cols, w.view, y2.data(), 19);
        for (int64_t r = 0; r < 19; ++r) {
          matmul(x.data(), 1, cols, w.view.slice_rows(r, 1), row.data(), 1);
          const std::string at = fmt::format("{} {} cols {} row {}", simd_name(s), dtype_name(dt), cols, r);
          EXPECT_EQ(0, std::memcmp(&row[0], &y1[static_cast<size_t>(r)], 4)) << at;
          EXPECT_EQ(0, std::memcmp(&y1[static_cast<size_t>(r)], &y2[static_cast<size_t>(r)], 4)) << at;
          EXPECT_EQ(0, std::memcmp(&y1[static_cast<size_t>(r)], &y2[static_cast<size_t>(19 + r)], 4)) << at;
        }
      }
}

TEST(Ops, RmsnormMatchesReference) {
  OpsState keep;
  std::mt19937 rng(4);
  for (Simd s : fast_levels())
    for (DType dt : {DType::F32, DType::BF16, DType::F16})
      for (int64_t d : {7168, 200, 129, 5}) {
        set_simd_level(s);
        const int64_t n = 3;
        TestWeight w = random_weight(dt, d, 1, rng);  // stored as [d, 1]; [1, d] works the same
        const auto x = random_vec(static_cast<size_t>(n * d), rng, 3.0f);
        std::vector<float> want(x.size()), got = x;
        ref::rmsnorm(x.data(), n, d, w.view, 1e-6f, want.data());
        rmsnorm(got.data(), n, d, w.view, 1e-6f, got.data());  // in place
        for (size_t i = 0; i < x.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-7) << simd_name(s) << " d " << d << " i " << i;
      }
}

TEST(Ops, ElementwiseMatchReference) {
  OpsState keep;
  std::mt19937 rng(5);
  for (Simd s : fast_levels())
    for (int64_t n : {1, 7, 16, 100, 2048 + 5}) {
      set_simd_level(s);
      const auto a = random_vec(n, rng, 4.0f), b = random_vec(n, rng);
      auto near = [&](const std::vector<float>& got, const std::vector<float>& want, const char* what) {
        for (int64_t i = 0; i < n; ++i)
          ASSERT_NEAR(got[i], want[i], 2e-6 * std::fabs(want[i]) + 1e-30) << simd_name(s) << " " << what << " n " << n;
      };
      std::vector<float> got(n), want(n);
      silu_mul(a.data(), b.data(), got.data(), n);
      ref::silu_mul(a.data(), b.data(), want.data(), n);
      near(got, want, "silu_mul");

      // Softmax over scores incl. masked (-inf) entries and a large range.
      std::vector<float> sc = random_vec(n, rng, 20.0f);
      for (int64_t i = 3; i < n; i += 5) sc[i] = -std::numeric_limits<float>::infinity();
      got = sc, want = sc;
      softmax(got.data(), n);
      ref::softmax(want.data(), n);
      near(got, want, "softmax");

      got = a, want = a;
      add(got.data(), b.data(), n);
      ref::add(want.data(), b.data(), n);
      near(got, want, "add");
      got = a, want = a;
      scale(got.data(), 0.37f, n);
      ref::scale(want.data(), 0.37f, n);
      near(got, want, "scale");
      got = a, want = a;
      axpy(-1.5f, b.data(), got.data(), n);
      ref::axpy(-1.5f, b.data(), want.data(), n);
      // A fused multiply-add rounds once: compare against the operands' size, not the result's.
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(got[i], want[i], 2e-7 * (std::fabs(a[i]) + std::fabs(1.5f * b[i]))) << simd_name(s) << " axpy";

      double abs_sum = 0;
      for (int64_t i = 0; i < n; ++i) abs_sum += std::fabs(double(a[i]) * b[i]);
      EXPECT_NEAR(dot(a.data(), b.data(), n), ref::dot(a.data(), b.data(), n), 1e-6 * abs_sum) << simd_name(s);
    }
}

TEST(Ops, SimdOverrideAndErrors) {
  OpsState keep;
  EXPECT_TRUE(simd_supported(Simd::Scalar));
  set_simd_level(Simd::Scalar);
  EXPECT_EQ(simd_level(), Simd::Scalar);
  WeightView w;
  std::vector<int32_t> ints(4);
  w.data = ints.data();
  w.dtype = DType::I32;
  w.rows = 2;
  w.cols = 2;
  float x[2] = {1, 2}, y[2];
  EXPECT_THROW(matmul(x, 1, 2, w, y, 2), Error);
  w.dtype = DType::F8_E4M3;  // FP8 without scale_inv
  EXPECT_THROW(matmul(x, 1, 2, w, y, 2), Error);
  w.dtype = DType::F32;
  EXPECT_THROW(rmsnorm(x, 1, 3, w, 1e-6f, y), Error);  // 4 values for d = 3
}

}  // namespace
}  // namespace dsv3::ops
