// Token sampling: greedy (temperature 0, the official demo's baseline), temperature, top-k,
// top-p, min-p, repetition / presence / frequency penalties, seeded so the same seed gives the
// same output.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

namespace dsv3 {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // HF style, over prompt and output
  float presence_penalty = 0.0f;    // OpenAI style, over output
  float frequency_penalty = 0.0f;   // OpenAI style, over output
  uint64_t seed = 0;
  // Throws dsv3::Error naming the bad field.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // `context` is the prompt, `output` what was generated so far (for the penalties).
  int32_t sample(const float* logits, int64_t V, std::span<const int32_t> context, std::span<const int32_t> output);
  bool greedy() const { return p_.temperature <= 0.0f; }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<float> buf_;
  std::vector<int32_t> idx_;
};

// Index of the largest value (lowest index on ties).
int32_t argmax(const float* x, int64_t n);

// out[i] = logits[i] - logsumexp(logits), sums in double.
void log_softmax(const float* logits, int64_t V, std::vector<float>& out);
// The n most likely ids of a log-probability row, most likely first (lowest id on ties); ids with
// logprob -inf (masked by a constraint) are left out, so fewer than n may come back.
std::vector<std::pair<int32_t, float>> top_logprobs(const std::vector<float>& lsm, int n);

}  // namespace dsv3
