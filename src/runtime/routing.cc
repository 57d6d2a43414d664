#include "runtime/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/ops.h"

namespace dsv3 {

Router::Router(const ModelConfig& c)
    : c_(c), E_(c.n_routed_experts), K_(c.num_experts_per_tok),
      norm_(c.norm_topk_prob && c.num_experts_per_tok > 1 && c.model_type != "deepseek_v2"),
      choice_(static_cast<size_t>(E_)), idx_(static_cast<size_t>(E_)), groups_(static_cast<size_t>(c.n_group)),
      keep_(static_cast<size_t>(c.n_group)) {}

void Router::route(const float* lg, const float* bias, float* score, int64_t* chosen, float* weight) {
  const int64_t E = E_, K = K_;
  if (c_.scoring_func == Scoring::kSigmoid) {
    for (int64_t e = 0; e < E; ++e) score[e] = 1.0f / (1.0f + std::exp(-lg[e]));
  } else {
    std::copy(lg, lg + E, score);
    ops::ref::softmax(score, E);
  }
  float* choice = choice_.data();
  for (int64_t e = 0; e < E; ++e) choice[e] = score[e] + (bias ? bias[e] : 0.0f);
  const int64_t G = c_.n_group;
  if (c_.topk_method != TopkMethod::kGreedy && G > 1) {
    const int64_t per = E / G;
    for (int64_t g = 0; g < G; ++g) {
      const float* p = choice + g * per;
      float v;
      if (c_.topk_method == TopkMethod::kNoauxTc) {  // sum of the top two
        float a = -std::numeric_limits<float>::infinity(), b = a;
        for (int64_t j = 0; j < per; ++j) {
          if (p[j] > a) { b = a; a = p[j]; } else if (p[j] > b) b = p[j];
        }
        v = a + b;
      } else {
        v = *std::max_element(p, p + per);
      }
      groups_[g] = {v, g};
    }
    std::partial_sort(groups_.begin(), groups_.begin() + c_.topk_group, groups_.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    std::fill(keep_.begin(), keep_.end(), 0);
    for (int64_t k = 0; k < c_.topk_group; ++k) keep_[groups_[k].second] = 1;
    // Experts of the other groups are out of the race: -inf, as the official inference code and
    // vLLM mask them (transformers fills 0.0, which lets a masked expert win whenever
    // score + bias < 0 for the kept ones).
    for (int64_t e = 0; e < E; ++e)
      if (!keep_[e / per]) choice[e] = -std::numeric_limits<float>::infinity();
  }
  for (int64_t e = 0; e < E; ++e) idx_[e] = e;
  std::partial_sort(idx_.begin(), idx_.begin() + K, idx_.end(), [&](int64_t a, int64_t b) {
    return choice[a] > choice[b] || (choice[a] == choice[b] && a < b);
  });
  float sum = 0.0f;
  for (int64_t k = 0; k < K; ++k) sum += score[idx_[k]];
  for (int64_t k = 0; k < K; ++k) {
    chosen[k] = idx_[k];
    float wk = score[idx_[k]];
    if (norm_) wk /= (sum + 1e-20f);
    weight[k] = wk * static_cast<float>(c_.routed_scaling_factor);
  }
}

}  // namespace dsv3
