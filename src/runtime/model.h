// The DeepSeek-V3 forward pass, written once against the backend-neutral ops: embedding,
// MLA (absorbed form over the paged latent cache), dense FFN / DeepSeekMoE, final norm and
// head, and the MTP module (spec sections 2-6). One call runs a ragged batch: any number of
// sequences, each with any number of new tokens starting at any position (prefill, chunked
// prefill, decode and speculative verification are all the same call).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/weights.h"
#include "runtime/kv_cache.h"
#include "runtime/rope.h"

namespace dsv3 {

struct ModelOptions {
  int64_t ctx = 0;          // max positions per sequence (0: max_position_embeddings, capped at 16384)
  int64_t max_seqs = 1;     // sequences that may hold a full context at once (sizes the cache)
  int threads = 0;          // 0: all cores
};

// One sequence's share of a batch: tokens at positions start .. start+n-1.
struct SeqInput {
  SeqCache* cache = nullptr;
  std::span<const int32_t> tokens;
  int64_t start = 0;
  bool all_logits = false;  // logits for every token (scoring); otherwise only for the last
  // MTP only: final hidden states h_i [n, H] of the main model for these positions.
  const float* hidden = nullptr;
};

struct ForwardOutput {
  std::vector<float> logits;  // [rows, vocab]: per input, all tokens or the last, in input order
  std::vector<float> hidden;  // [tokens, H] after the final norm (main model only, if requested)
  int64_t rows = 0;
};

// Named-intermediate callback: (name, layer or -1, data [rows, cols], rows, cols).
using DumpFn = std::function<void(const std::string&, int, const float*, int64_t, int64_t)>;

class Model {
 public:
  // Opens and validates the checkpoint in `dir` (config.json + safetensors), binds the weights.
  Model(const std::string& dir, const ModelOptions& opt = {});
  ~Model();

  const ModelConfig& config() const { return files_.config; }
  const ModelWeights& weights() const { return w_; }
  KVCache& cache() { return *kv_; }
  int64_t ctx() const { return ctx_; }
  bool has_mtp() const { return config().num_nextn_predict_layers > 0; }
  // Bytes of weights one decode token reads (attention, dense, shared and the active experts).
  double decode_bytes_per_token() const;
  double weight_bytes() const;

  // Main model. Writes each token's latent KV into its sequence's cache and sets cache->len.
  void forward(std::span<SeqInput> batch, ForwardOutput& out, bool want_hidden = false);
  // MTP module 0 at positions start..: tokens are t_{i+1}, hidden are h_i; logits predict t_{i+2}.
  // vocab_rows > 0: logits of token ids [0, vocab_rows) only, [rows, vocab_rows] (a cheaper
  // draft head: see GenerateOptions::draft_vocab).
  void forward_mtp(std::span<SeqInput> batch, ForwardOutput& out, int64_t vocab_rows = 0);

  void set_dump(DumpFn fn) { dump_ = std::move(fn); }

 private:
  struct Workspace;
  void check_batch(std::span<SeqInput> batch, bool mtp) const;
  // Makes the batch's positions addressable in the cache and records each token's position and
  // sequence; returns the token count.
  int64_t place_batch(std::span<SeqInput> batch);
  void embed(const WeightView& table, std::span<SeqInput> batch, float* x) const;
  // x [n, H] through decoder layer `layer` (residual updated in place).
  void layer_forward(int layer, float* x, int64_t n);
  void attention(int layer, const float* h, int64_t n, float* out);
  void moe(const LayerWeights& L, const float* h, int64_t n, float* out, int layer);
  // One FFN (dense MLP, shared or routed expert) over `rows` token rows: y = down(silu(gate x) * up x).
  struct FfnRun {
    const MlpWeights* m;
    const float* x;  // [rows, H]
    int64_t rows;
    float* y;  // [rows, H]
  };
  // Every run, their matmuls batched: two parallel regions in all at decode sizes.
  void ffn(std::span<const FfnRun> runs);
  void check_nan_once(const WeightView& v);
  void head(const WeightView& norm, const WeightView& head, std::span<SeqInput> batch, float* x, int64_t n,
            ForwardOutput& out, bool want_hidden, int64_t vocab_rows = 0);
  void dump(const char* name, int layer, const float* p, int64_t rows, int64_t cols) const {
    if (dump_) dump_(name, layer, p, rows, cols);
  }

  ModelFiles files_;
  ModelWeights w_;
  Rope rope_;
  std::unique_ptr<KVCache> kv_;
  int64_t ctx_ = 0;
  DumpFn dump_;
  std::unique_ptr<Workspace> ws_;
};

}  // namespace dsv3
