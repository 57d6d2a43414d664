// The backward ops (ops/grad.h) against their scalar twins on shapes that are not multiples of
// any block size, the twins against central finite differences of the forward ops, and
// thread-count invariance (the trainer's determinism rests on it).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "ops/grad.h"
#include "ops/ops.h"
#include "testing.h"

namespace dsv3::ops {
namespace {

using dsv3::testing::random_vec;

double rel(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
    m = std::max(m, std::fabs(static_cast<double>(b[i])));
  }
  return d / m;
}

WeightView f32_view(const std::vector<float>& w, int64_t rows, int64_t cols) {
  WeightView v;
  v.data = w.data();
  v.dtype = DType::F32;
  v.rows = rows;
  v.cols = cols;
  return v;
}

TEST(GradOps, MatmulWgradMatchesRef) {
  std::mt19937 rng(1);
  for (auto [n, R, C] : {std::tuple{1, 3, 5}, {37, 129, 70}, {200, 33, 257}, {5, 300, 9}}) {
    const auto dy = random_vec(static_cast<size_t>(n * (R + 3)), rng), x = random_vec(static_cast<size_t>(n * (C + 1)), rng);
    auto init = random_vec(static_cast<size_t>(R * C), rng);
    for (bool acc : {false, true}) {
      std::vector<float> got = init, want = init;
      matmul_wgrad(dy.data(), n, R + 3, x.data(), C + 1, got.data(), R, C, acc);
      ref::matmul_wgrad(dy.data(), n, R + 3, x.data(), C + 1, want.data(), R, C, acc);
      EXPECT_LT(rel(got, want), 1e-5) << n << " " << R << " " << C << " acc " << acc;
    }
  }
}

TEST(GradOps, MatmulDgradMatchesRefForEveryWeightDtype) {
  std::mt19937 rng(2);
  for (DType dt : {DType::F32, DType::BF16}) {
    for (auto [n, R, C] : {std::tuple{1, 3, 5}, {37, 129, 70}, {64, 33, 257}}) {
      const auto wf = random_vec(static_cast<size_t>(R * C), rng);
      std::vector<uint8_t> bytes(static_cast<size_t>(R * C) * dtype_size(dt));
      from_f32(dt, wf.data(), bytes.data(), static_cast<size_t>(R * C));
      WeightView w;
      w.data = bytes.data();
      w.dtype = dt;
      w.rows = R;
      w.cols = C;
      const auto dy = random_vec(static_cast<size_t>(n * R), rng);
      auto init = random_vec(static_cast<size_t>(n * C), rng);
      for (bool acc : {false, true}) {
        std::vector<float> got = init, want = init;
        matmul_dgrad(dy.data(), n, R, w, got.data(), C, acc);
        ref::matmul_dgrad(dy.data(), n, R, w, want.data(), C, acc);
        EXPECT_LT(rel(got, want), 1e-5) << dtype_name(dt) << " " << n << " " << R << " " << C;
      }
    }
  }
}

// The scalar twins are the gradients of the forward ops: central differences in double over
// the forward's float32 result, on a few coordinates each.
TEST(GradOps, RefTwinsMatchFiniteDifferences) {
  std::mt19937 rng(3);
  const int64_t n = 3, d = 19;
  auto x = random_vec(static_cast<size_t>(n * d), rng), w = random_vec(static_cast<size_t>(d), rng), dy = random_vec(static_cast<size_t>(n * d), rng);
  // L(x, w) = sum dy * rmsnorm(x, w)
  auto loss = [&](const std::vector<float>& xx, const std::vector<float>& ww) {
    std::vector<float> y(xx.size());
    ref::rmsnorm(xx.data(), n, d, f32_view(ww, d, 1), 1e-6f, y.data());
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(dy[i]) * y[i];
    return s;
  };
  std::vector<float> dx(x.size()), dw(w.size(), 0.0f);
  ref::rmsnorm_backward(x.data(), dy.data(), n, d, w.data(), 1e-6f, dx.data(), dw.data(), false);
  const float h = 1e-2f;
  for (int i : {0, 7, 20, 56}) {
    auto xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    EXPECT_NEAR((loss(xp, w) - loss(xm, w)) / (2 * h), dx[i], 2e-3) << "dx " << i;
  }
  for (int j : {0, 5, 18}) {
    auto wp = w, wm = w;
    wp[j] += h;
    wm[j] -= h;
    EXPECT_NEAR((loss(x, wp) - loss(x, wm)) / (2 * h), dw[j], 2e-3) << "dw " << j;
  }
  // silu_mul: L = sum dy * silu(g) * u
  auto g = random_vec(8, rng), u = random_vec(8, rng), d8 = random_vec(8, rng);
  std::vector<float> dg(8), du(8);
  ref::silu_mul_backward(g.data(), u.data(), d8.data(), dg.data(), du.data(), 8);
  for (int i = 0; i < 8; ++i) {
    auto f = [&](float gg, float uu) { return static_cast<double>(d8[i]) * gg / (1 + std::exp(-gg)) * uu; };
    EXPECT_NEAR((f(g[i] + h, u[i]) - f(g[i] - h, u[i])) / (2 * h), dg[i], 1e-3);
    EXPECT_NEAR((f(g[i], u[i] + h) - f(g[i], u[i] - h)) / (2 * h), du[i], 1e-3);
  }
  // softmax: L = sum c * softmax(z)
  auto z = random_vec(6, rng), cvec = random_vec(6, rng);
  auto sm = [&](std::vector<float> zz) {
    ref::softmax(zz.data(), 6);
    double s = 0;
    for (int i = 0; i < 6; ++i) s += static_cast<double>(cvec[i]) * zz[i];
    return s;
  };
  std::vector<float> p = z;
  ref::softmax(p.data(), 6);
  std::vector<float> dz = cvec;
  ref::softmax_backward(p.data(), dz.data(), 6);
  for (int i = 0; i < 6; ++i) {
    auto zp = z, zm = z;
    zp[i] += h;
    zm[i] -= h;
    EXPECT_NEAR((sm(zp) - sm(zm)) / (2 * h), dz[i], 1e-3);
  }
}

TEST(GradOps, ElementwiseAndRowOpsMatchRef) {
  std::mt19937 rng(4);
  const int64_t n = 67, d = 131;
  const auto x = random_vec(static_cast<size_t>(n * d), rng), dy = random_vec(static_cast<size_t>(n * d), rng), w = random_vec(static_cast<size_t>(d), rng);
  std::vector<float> dx1(x.size(), 1.0f), dx2(x.size(), 1.0f), dw1(w.size(), 0.5f), dw2(w.size(), 0.5f);
  rmsnorm_backward(x.data(), dy.data(), n, d, w.data(), 1e-6f, dx1.data(), dw1.data(), true);
  ref::rmsnorm_backward(x.data(), dy.data(), n, d, w.data(), 1e-6f, dx2.data(), dw2.data(), true);
  EXPECT_LT(rel(dx1, dx2), 1e-5);
  EXPECT_LT(rel(dw1, dw2), 1e-5);
  std::vector<float> g1(x.size()), u1(x.size()), g2(x.size()), u2(x.size());
  silu_mul_backward(x.data(), dy.data(), w.data(), g1.data(), u1.data(), d);
  ref::silu_mul_backward(x.data(), dy.data(), w.data(), g2.data(), u2.data(), d);
  EXPECT_LT(rel(g1, g2), 1e-6);
  EXPECT_LT(rel(u1, u2), 1e-6);
  // Cross-entropy: loss and gradient, with a row that has no target.
  const int64_t V = 1001, rows = 5;
  auto z = random_vec(static_cast<size_t>(rows * V), rng, 3.0f);
  std::vector<int32_t> tg{3, -1, 1000, 0, 517};
  auto z1 = z, z2 = z;
  std::vector<float> lp1(rows), lp2(rows);
  const double l1 = cross_entropy(z1.data(), rows, V, tg.data(), 0.25f, lp1.data());
  const double l2 = ref::cross_entropy(z2.data(), rows, V, tg.data(), 0.25f, lp2.data());
  EXPECT_NEAR(l1, l2, 1e-4);
  EXPECT_LT(rel(z1, z2), 1e-5);
  EXPECT_EQ(lp1[1], 0.0f);
  for (int64_t j = 0; j < V; ++j) EXPECT_EQ(z1[V + j], 0.0f);  // no target: no gradient
  double s = 0;
  for (int64_t j = 0; j < V; ++j) s += z1[j];
  EXPECT_NEAR(s, 0.0, 1e-5);  // softmax - onehot sums to 0
  EXPECT_NEAR(-(lp1[0] + lp1[2] + lp1[3] + lp1[4]), l1, 1e-3);
}

TEST(GradOps, ResultsDoNotDependOnTheThreadCount) {
  std::mt19937 rng(5);
  const int64_t n = 150, R = 96, C = 130;
  const auto dy = random_vec(static_cast<size_t>(n * R), rng), x = random_vec(static_cast<size_t>(n * C), rng), w = random_vec(static_cast<size_t>(R * C), rng);
  std::vector<float> a(static_cast<size_t>(R * C)), b(a.size()), da(static_cast<size_t>(n * C)), db(da.size());
  const int saved = num_threads();
  set_num_threads(1);
  matmul_wgrad(dy.data(), n, R, x.data(), C, a.data(), R, C, false);
  matmul_dgrad(dy.data(), n, R, f32_view(w, R, C), da.data(), C, false);
  set_num_threads(2);
  matmul_wgrad(dy.data(), n, R, x.data(), C, b.data(), R, C, false);
  matmul_dgrad(dy.data(), n, R, f32_view(w, R, C), db.data(), C, false);
  set_num_threads(saved);
  EXPECT_EQ(a, b);
  EXPECT_EQ(da, db);
}

}  // namespace
}  // namespace dsv3::ops
