// DeepSeekMoE routing of one token (spec section 5), shared by inference and training:
// scores from router logits, selection with score + bias over the best groups, gate weights
// from the unbiased scores.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "model/config.h"

namespace dsv3 {

class Router {
 public:
  explicit Router(const ModelConfig& c);
  // logits [E], bias [E] or null -> score [E] (sigmoid or softmax, unbiased), chosen [K]
  // expert ids (best first) and weight [K] (normalised when normalizes(), times the routed
  // scaling factor). Experts of groups not kept are masked to -inf before the top-k (spec
  // section 5; transformers' 0.0 fill differs when biased scores go negative).
  void route(const float* logits, const float* bias, float* score, int64_t* chosen, float* weight);
  // Whether weights are divided by the sum of the chosen scores. transformers' DeepseekV2 gate
  // never renormalises (it only scales); V3 does when norm_topk_prob.
  bool normalizes() const { return norm_; }
  int64_t experts() const { return E_; }
  int64_t top_k() const { return K_; }

 private:
  const ModelConfig& c_;
  int64_t E_, K_;
  bool norm_;
  std::vector<float> choice_;
  std::vector<int64_t> idx_;
  std::vector<std::pair<float, int64_t>> groups_;
  std::vector<char> keep_;
};

}  // namespace dsv3
