// Constrained decoding hook: something that knows which tokens may come next (a JSON grammar, a
// tool-call syntax) masks each logits row before sampling and follows the tokens sampled from it.
// The engine calls both methods from its step thread only, one sequence at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

namespace dsv3 {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets logits[v] = -inf for every token v that may not come next. `left`: tokens the sequence
  // may still generate, this one included (a grammar closes its value in time). logits: [V]
  virtual void mask(float* logits, int64_t V, int64_t left) = 0;
  // Follows a token sampled from a row this constraint masked.
  virtual void accept(int32_t token) = 0;
};

// One constraint per sequence (n > 1 choices each follow their own tokens).
using ConstraintFactory = std::function<std::unique_ptr<TokenConstraint>()>;

}  // namespace dsv3
