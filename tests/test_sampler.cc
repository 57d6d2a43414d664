// Sampler on hand-made logits with known distributions: greedy/argmax, seeding, temperature,
// top-k, top-p, min-p (frequency checks over 20k draws with a chi-square bound), the
// repetition / presence / frequency penalties, parameter validation, log_softmax and
// top_logprobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "runtime/sampler.h"

namespace dsv3 {
namespace {

constexpr int kDraws = 20000;

std::vector<float> log_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

// Draws kDraws tokens and checks their frequencies against `expect` (probabilities summing to
// 1): tokens with probability 0 must never appear; chi-square (3 or fewer degrees of freedom)
// below 30, far beyond the 99.99% quantile, so the test is not flaky but catches wrong weights.
void expect_distribution(const SamplingParams& p, const std::vector<float>& logits, const std::vector<double>& expect,
                         std::span<const int32_t> context = {}, std::span<const int32_t> output = {}) {
  Sampler s(p);
  std::vector<int> count(logits.size(), 0);
  for (int i = 0; i < kDraws; ++i) {
    const int32_t t = s.sample(logits.data(), static_cast<int64_t>(logits.size()), context, output);
    ASSERT_GE(t, 0);
    ASSERT_LT(t, static_cast<int32_t>(logits.size()));
    ++count[static_cast<size_t>(t)];
  }
  double chi2 = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (expect[i] == 0) {
      EXPECT_EQ(count[i], 0) << "token " << i << " should never be drawn";
      continue;
    }
    const double e = expect[i] * kDraws;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  EXPECT_LT(chi2, 30.0) << "counts " << count[0] << " " << count[1] << " " << count[2] << " " << count[3];
}

std::vector<double> normalized(std::vector<double> w) {
  const double s = std::accumulate(w.begin(), w.end(), 0.0);
  for (auto& x : w) x /= s;
  return w;
}

const std::vector<double> kP = {0.1, 0.2, 0.3, 0.4};

TEST(Sampler, ArgmaxLowestIndexOnTies) {
  const float x[] = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(argmax(x, 4), 1);
  const float y[] = {-3.0f};
  EXPECT_EQ(argmax(y, 1), 0);
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  SamplingParams p;  // temperature 0
  Sampler s(p);
  EXPECT_TRUE(s.greedy());
  const std::vector<float> l = {0.1f, 3.0f, 2.9f, -7.0f, 3.0f};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l.data(), 5, {}, {}), 1);
}

TEST(Sampler, TemperatureOneFollowsSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1;
  expect_distribution(p, log_of(kP), kP);
}

TEST(Sampler, TemperatureScalesLogits) {
  SamplingParams p;
  p.temperature = 2.0f;
  p.seed = 2;
  // p^(1/T), renormalised.
  expect_distribution(p, log_of(kP), normalized({std::sqrt(0.1), std::sqrt(0.2), std::sqrt(0.3), std::sqrt(0.4)}));
}

TEST(Sampler, SameSeedSameSequence) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  const auto l = log_of(kP);
  Sampler a(p), b(p);
  p.seed = 4321;
  Sampler c(p);
  std::vector<int32_t> sa, sb, sc;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(a.sample(l.data(), 4, {}, {}));
    sb.push_back(b.sample(l.data(), 4, {}, {}));
    sc.push_back(c.sample(l.data(), 4, {}, {}));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc) << "a different seed should give a different sequence";
}

TEST(Sampler, TopKOneIsArgmax) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  p.seed = 3;
  Sampler s(p);
  const std::vector<float> l = {1.0f, 1.2f, 0.9f, 1.1f};
  for (int i = 0; i < 500; ++i) ASSERT_EQ(s.sample(l.data(), 4, {}, {}), 1);
}

TEST(Sampler, TopKTwoRenormalises) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  p.seed = 4;
  expect_distribution(p, log_of(kP), {0, 0, 3.0 / 7, 4.0 / 7});
}

TEST(Sampler, TinyTopPIsArgmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 1e-6f;
  p.seed = 5;
  Sampler s(p);
  const auto l = log_of({0.3, 0.25, 0.25, 0.2});
  for (int i = 0; i < 500; ++i) ASSERT_EQ(s.sample(l.data(), 4, {}, {}), 0);
}

TEST(Sampler, TopPKeepsSmallestSetReachingP) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.65f;  // 0.4 < 0.65 <= 0.4 + 0.3: tokens 3 and 2
  p.seed = 6;
  expect_distribution(p, log_of(kP), {0, 0, 3.0 / 7, 4.0 / 7});
  p.top_p = 0.85f;  // 0.7 < 0.85 <= 0.9: tokens 3, 2, 1
  expect_distribution(p, log_of(kP), {0, 2.0 / 9, 3.0 / 9, 4.0 / 9});
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.6f;  // keep p >= 0.24: tokens 2 (0.3) and 3 (0.4)
  p.seed = 7;
  expect_distribution(p, log_of(kP), {0, 0, 3.0 / 7, 4.0 / 7});
  p.min_p = 0.4f;  // keep p >= 0.16: tokens 1, 2, 3
  expect_distribution(p, log_of(kP), {0, 2.0 / 9, 3.0 / 9, 4.0 / 9});
}

// A large vocabulary (the sampler sorts only a growing head of it, 64, 1024, 16384 ids, then all):
// ids [0, 1500) weigh 1, ids [1500, 20000) weigh e^-3, and odd ids in [15000, 20000) are masked
// (-inf). The kept prefix (logit order, lowest id first on ties) is computed here by a full sort
// in double, and the draws must stay inside it (one id of rounding slack) and split between the
// two weight classes in proportion.
TEST(Sampler, LargeVocabularyTruncationMatchesAFullSort) {
  constexpr int32_t V = 20000, kFlat = 1500;
  std::vector<float> l(V, -3.0f);
  for (int32_t i = 0; i < kFlat; ++i) l[static_cast<size_t>(i)] = 0.0f;
  for (int32_t i = 15001; i < V; i += 2) l[static_cast<size_t>(i)] = -INFINITY;
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  struct Case { float top_p, min_p; int top_k; };
  for (const Case cs : {Case{0.5f, 0.0f, 0}, Case{0.95f, 0.0f, 0}, Case{1.0f, 0.5f, 0}, Case{0.9f, 0.0f, 8000},
                        Case{1.0f, 0.0f, 0}}) {
    // Reference: the kept prefix length and its weight in each class.
    const int64_t k = cs.top_k > 0 ? cs.top_k : V;
    double ksum = 0;
    for (int64_t i = 0; i < k; ++i) ksum += std::exp(static_cast<double>(l[order[i]]));
    int64_t keep = 0;
    double c = 0, flat = 0;
    while (keep < k && std::isfinite(l[order[keep]])) {
      const double w = std::exp(static_cast<double>(l[order[keep]]));
      if (keep > 0 && w < cs.min_p) break;
      c += w;
      flat += order[keep] < kFlat ? w : 0;
      ++keep;
      if (cs.top_p < 1.0f && c >= cs.top_p * ksum) break;
    }
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = cs.top_p;
    p.min_p = cs.min_p;
    p.top_k = cs.top_k;
    p.seed = 11;
    Sampler s(p);
    std::vector<char> kept(V, 0);
    for (int64_t i = 0; i < std::min<int64_t>(keep + 1, V); ++i) kept[static_cast<size_t>(order[i])] = 1;
    int in_flat = 0;
    constexpr int kN = 1000;
    for (int d = 0; d < kN; ++d) {
      const int32_t t = s.sample(l.data(), V, {}, {});
      ASSERT_TRUE(t >= 0 && t < V && kept[static_cast<size_t>(t)])
          << "top_p " << cs.top_p << " min_p " << cs.min_p << " top_k " << cs.top_k << ": drew " << t
          << ", outside the " << keep << " kept ids";
      in_flat += t < kFlat;
    }
    const double expect = flat / c;  // binomial: 5 standard deviations
    EXPECT_NEAR(in_flat / static_cast<double>(kN), expect, 5 * std::sqrt(expect * (1 - expect) / kN) + 1e-9)
        << "top_p " << cs.top_p << " min_p " << cs.min_p << " top_k " << cs.top_k << " kept " << keep;
  }
}

TEST(Sampler, RepetitionPenaltyHfStyle) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  // Positive logits are divided: token 0 (1.0 -> 0.5) falls below token 1 (0.9).
  const std::vector<float> pos = {1.0f, 0.9f, -0.5f, -0.6f};
  const int32_t ctx0[] = {0};
  EXPECT_EQ(s.sample(pos.data(), 4, {}, {}), 0);
  EXPECT_EQ(s.sample(pos.data(), 4, ctx0, {}), 1);
  EXPECT_EQ(s.sample(pos.data(), 4, {}, ctx0), 1) << "the output counts too";
  // Repeated occurrences are penalised once.
  const int32_t ctx000[] = {0, 0, 0};
  const std::vector<float> pos2 = {1.0f, 0.4f, -0.5f, -0.6f};
  EXPECT_EQ(s.sample(pos2.data(), 4, ctx000, ctx000), 0);
  // Negative logits are multiplied: token 0 (-1.0 -> -2.0) falls below token 1 (-1.2).
  const std::vector<float> neg = {-1.0f, -1.2f, -3.0f, -4.0f};
  EXPECT_EQ(s.sample(neg.data(), 4, ctx0, {}), 1);
  // Other tokens are untouched: penalising token 2 changes nothing.
  const int32_t ctx2[] = {2};
  EXPECT_EQ(s.sample(neg.data(), 4, ctx2, {}), 0);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesOverOutputOnly) {
  const std::vector<float> l = {1.0f, 0.6f, 0.0f, -1.0f};
  const int32_t once[] = {0}, thrice[] = {0, 2, 0, 0};
  {
    SamplingParams p;
    p.presence_penalty = 0.5f;  // 1.0 - 0.5 < 0.6
    Sampler s(p);
    EXPECT_EQ(s.sample(l.data(), 4, once, {}), 0) << "presence penalty applies to the output, not the prompt";
    EXPECT_EQ(s.sample(l.data(), 4, {}, once), 1);
    EXPECT_EQ(s.sample(l.data(), 4, {}, thrice), 1);
  }
  {
    SamplingParams p;
    p.presence_penalty = 0.3f;  // 0.7 > 0.6 however often it appeared
    Sampler s(p);
    EXPECT_EQ(s.sample(l.data(), 4, {}, thrice), 0);
  }
  {
    SamplingParams p;
    p.frequency_penalty = 0.15f;  // once: 0.85 > 0.6; three times: 0.55 < 0.6
    Sampler s(p);
    EXPECT_EQ(s.sample(l.data(), 4, {}, once), 0);
    EXPECT_EQ(s.sample(l.data(), 4, {}, thrice), 1);
    EXPECT_EQ(s.sample(l.data(), 4, thrice, {}), 0);
  }
  {
    SamplingParams p;
    p.frequency_penalty = -0.5f;  // negative values encourage repeats:
    p.presence_penalty = -0.6f;   // token 2: 0.0 + 0.6 + 0.5 = 1.1 > 1.0
    Sampler s(p);
    const int32_t two[] = {2};
    EXPECT_EQ(s.sample(l.data(), 4, {}, two), 2);
  }
}

TEST(Sampler, PenaltiesShiftTheSampledDistribution) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.presence_penalty = static_cast<float>(std::log(2.0));  // halves token 3's weight
  p.seed = 8;
  const int32_t out[] = {3};
  expect_distribution(p, log_of(kP), normalized({0.1, 0.2, 0.3, 0.2}), {}, out);
  SamplingParams r;
  r.temperature = 1.0f;
  r.repetition_penalty = 2.0f;
  r.seed = 9;
  expect_distribution(r, log_of(kP), kP);  // nothing to penalise
  // Logits log(p) are negative, so the penalty doubles token 1's: weight 0.2^2.
  const int32_t ctx1[] = {1};
  expect_distribution(r, log_of(kP), normalized({0.1, 0.04, 0.3, 0.4}), ctx1);
}

TEST(Sampler, ValidateRejectsBadValues) {
  EXPECT_NO_THROW(SamplingParams{}.validate());
  auto bad = [](auto edit) {
    SamplingParams p;
    edit(p);
    EXPECT_THROW(p.validate(), Error);
  };
  bad([](SamplingParams& p) { p.temperature = -0.1f; });
  bad([](SamplingParams& p) { p.temperature = NAN; });
  bad([](SamplingParams& p) { p.temperature = INFINITY; });
  bad([](SamplingParams& p) { p.temperature = 1000.0f; });
  bad([](SamplingParams& p) { p.top_k = -1; });
  bad([](SamplingParams& p) { p.top_p = 0.0f; });
  bad([](SamplingParams& p) { p.top_p = 1.5f; });
  bad([](SamplingParams& p) { p.top_p = NAN; });
  bad([](SamplingParams& p) { p.min_p = -0.1f; });
  bad([](SamplingParams& p) { p.min_p = 1.1f; });
  bad([](SamplingParams& p) { p.repetition_penalty = 0.0f; });
  bad([](SamplingParams& p) { p.repetition_penalty = -1.0f; });
  bad([](SamplingParams& p) { p.repetition_penalty = INFINITY; });
  bad([](SamplingParams& p) { p.presence_penalty = 2.5f; });
  bad([](SamplingParams& p) { p.presence_penalty = NAN; });
  bad([](SamplingParams& p) { p.frequency_penalty = -2.5f; });
  // Good edge values.
  SamplingParams ok;
  ok.temperature = 100.0f;
  ok.top_p = 1.0f;
  ok.min_p = 1.0f;
  ok.presence_penalty = -2.0f;
  ok.frequency_penalty = 2.0f;
  ok.top_k = 100000;
  EXPECT_NO_THROW(ok.validate());
}

TEST(Sampler, LogSoftmaxAndTopLogprobs) {
  const std::vector<float> l = log_of({0.1, 0.2, 0.3, 0.4});
  std::vector<float> shifted;
  for (float x : l) shifted.push_back(x + 50.0f);  // shift invariance
  std::vector<float> lsm;
  log_softmax(shifted.data(), 4, lsm);
  ASSERT_EQ(lsm.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(lsm[i], std::log(kP[i]), 1e-5);
  const auto top = top_logprobs(lsm, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 3);
  EXPECT_EQ(top[1].first, 2);
  EXPECT_EQ(top[2].first, 1);
  EXPECT_FLOAT_EQ(top[0].second, lsm[3]);
  EXPECT_EQ(top_logprobs(lsm, 10).size(), 4u);
  EXPECT_TRUE(top_logprobs(lsm, 0).empty());
  // Ties: lowest id first.
  std::vector<float> tie = {-1.0f, -0.5f, -0.5f, -2.0f};
  const auto tt = top_logprobs(tie, 2);
  EXPECT_EQ(tt[0].first, 1);
  EXPECT_EQ(tt[1].first, 2);
}

}  // namespace
}  // namespace dsv3
