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
  DType kv_dtype = DType::F32;  // latent cache: F32 or BF16 (half the memory)
  // Expert parallelism under mpirun (spec 9): this process is rank ep_rank of ep_size. Rank 0
  // runs the whole forward pass except the routed experts it does not own; ranks > 0 hold only
  // their routed experts and serve them (serve_experts) until rank 0's Model is destroyed.
  int ep_rank = 0, ep_size = 1;
};

// Where a rank's weights stand under expert parallelism (Model::expert_parallel_stats).
struct RankStats {
  double resident_weight_bytes = 0;  // touched pages of the mapped checkpoint (Rss)
  double planned_weight_bytes = 0;   // the weights this rank reads: its experts (+ the rest on rank 0)
  double bytes_sent = 0;             // sent to other ranks by the expert all-to-alls so far
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
  // draft head: see GenerateOptions::draft_vocab). draft false: only the MTP layer's cache
  // latents of every position are written (no layer, no head, out untouched), which keeps the
  // module in step while no draft is wanted.
  void forward_mtp(std::span<SeqInput> batch, ForwardOutput& out, int64_t vocab_rows = 0, bool draft = true);

  void set_dump(DumpFn fn) { dump_ = std::move(fn); }

  // Expert parallelism. Routed expert e of every MoE layer lives on rank owner(e): contiguous
  // blocks of experts, so a rank's experts are contiguous within each layer's tensors.
  int ep_size() const { return ep_size_; }
  int expert_owner(int64_t e) const { return static_cast<int>(e * ep_size_ / config().n_routed_experts); }
  // Ranks > 0: answers rank 0's expert all-to-alls until rank 0 ends (its Model's destructor).
  void serve_experts();
  // Rank 0: every rank's stats (one entry per rank; this process alone without mpirun).
  std::vector<RankStats> expert_parallel_stats();
  // Bytes a decode token's expert all-to-alls move with uniform routing: per MoE layer, each of
  // its top-k rows goes to another rank with probability (ranks-1)/ranks, there as x [H] and
  // back as the expert's output [H], float32.
  double ideal_comm_bytes_per_token() const;

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
  void store_latents(int layer, float* kv, int64_t n);
  void moe(const LayerWeights& L, const float* h, int64_t n, float* out, int layer);
  // One input row of an expert: a local token (added into out[tok] with weight wt) or a row
  // another rank sent (its output is copied to ret, to go back).
  struct ExpertRow {
    const float* x;
    int64_t tok;
    float wt;
    float* ret;
  };
  // The experts of MoE layer `layer` that this rank owns, over `rows` [E] (the shared expert
  // too over this rank's n tokens h [n, H]); local outputs summed into out [n, H].
  void run_experts(const MoeWeights& m, const float* h, int64_t n, std::vector<std::vector<ExpertRow>>& rows, float* out);
  // Expert parallelism. Each MoE layer starts with an all-to-all of {op, rows for you}: op is
  // rank 0's (a layer, or quit / stats), so ranks without tokens learn what to run; sc / rc
  // [ranks] are the rows this rank sends / receives.
  int ep_header(int op, const std::vector<int>& sc, std::vector<int>& rc);
  // Rows of experts on other ranks go there (alltoallv), rows sent here join `rows` of the
  // experts this rank owns, run_experts runs, and the outputs go back and are summed into out.
  void exchange_and_run(const MoeWeights& m, const float* h, int64_t n, std::vector<std::vector<ExpertRow>>& rows,
                        const std::vector<int>& sc, const std::vector<int>& rc, float* out);
  RankStats rank_stats() const;
  // Every rank's rank_stats() on rank 0 (empty elsewhere): one collective, all ranks call it.
  std::vector<RankStats> gather_rank_stats() const;
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
  // First MTP use: the MTP module's shared_head.head becomes the main lm_head when their bytes
  // are identical (spec 6: a copy in V3 and in what dsv3 train writes), so drafting reads the
  // pages the main head already holds instead of a second copy (V3: 1.85 GB). Its embed_tokens
  // copy is left alone: a lookup reads one row, while comparing would read both tables whole.
  void share_mtp_copies_once();
  bool mtp_checked_ = false;
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
  int ep_rank_ = 0, ep_size_ = 1;
};

}  // namespace dsv3
