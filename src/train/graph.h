// The training graph: forward with saved activations and the exact backward of every part of
// the model (spec 2-6), over the ops layer. MLA runs in the naive (non-absorbed) form, which is
// mathematically the absorbed form inference runs; routing is the same Router.
//
// A batch is B sequences of T tokens [B, T], each starting at position 0 with causal attention
// inside it (V3 packs documents with no mask between them). Loss (spec 9):
//   L = mean CE of the main head over the B*(T-1) predicted tokens
//     + mtp_weight / D * sum_k mean CE of MTP module k over its B*(T-2-k) predictions
//     + balance_alpha * mean over sequences of sum over MoE layers of sum_i f_i * P_i.
// With LossWeights::mtp_main_targets the MTP modules learn the main model's greedy predictions
// instead of the data (self-distillation); with main_frozen only the MTP modules get gradients.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "ops/lowp.h"
#include "train/params.h"

namespace dsv3 {

struct LossWeights {
  double mtp = 0.3;        // lambda
  double balance = 1e-4;   // alpha (sequence-wise balance loss)
  // MTP module k at position i learns the main model's greedy prediction of token i+2+k (the
  // argmax of its logits at i+1+k) instead of the data's token: speculative decoding accepts a
  // draft exactly when it equals that prediction, so this trains for acceptance.
  bool mtp_main_targets = false;
  // The main model is frozen: its forward runs (it feeds the MTP modules and the targets), its
  // backward does not, so only the MTP modules' tensors get gradients.
  bool main_frozen = false;
};

struct StepStats {
  double main_sum = 0;           // sum of -log p over main predictions
  int64_t main_count = 0;
  std::vector<double> mtp_sum;   // [D] per MTP module
  std::vector<int64_t> mtp_count;
  // [D] of module k's mtp_count predictions, those whose argmax equals the main model's greedy
  // prediction of the same token: greedy draft acceptance with the data as the prefix.
  std::vector<int64_t> mtp_agree;
  double balance = 0;            // alpha * balance loss (already weighted)
  // Tokens routed to each expert in this batch, per MoE layer (main layers first, then MTP):
  // [moe layers][E]; moe_layer_index[i] is the model layer of row i.
  std::vector<std::vector<int64_t>> loads;
  std::vector<int> moe_layer_index;
  double main_loss() const { return main_count ? main_sum / static_cast<double>(main_count) : 0.0; }
  double mtp_loss() const;  // mean over modules of each module's mean CE
  double mtp_agreement() const;  // module 0's agreement rate (0 without MTP)
  double loss(const LossWeights& lw) const { return main_loss() + lw.mtp * mtp_loss() + balance; }
};

class TrainGraph {
 public:
  // precision: GEMM inputs of every Linear inside the blocks (ops/lowp.h); the embedding,
  // heads, router, norms and attention core are fp32 in every mode.
  explicit TrainGraph(Params& p, ops::GemmPrecision precision = ops::GemmPrecision::F32);
  ~TrainGraph();
  // Forward over tokens [B, T]; with `backward`, also accumulates dL/dW into p.grad().
  StepStats run(const int32_t* tokens, int64_t B, int64_t T, const LossWeights& lw, bool backward);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3
