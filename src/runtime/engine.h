// Continuous batching over one Model: requests join between steps, each step is one forward
// over a ragged batch (prefill chunks of new requests beside the decode tokens of running ones),
// finished requests leave. Also: MTP speculative decoding per request, prompt/output logprobs,
// and prefix caching of the paged latent cache (block-granular hashing, LRU eviction).
// submit() and cancel() may be called from any thread; step() from one thread.
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/constraint.h"
#include "runtime/model.h"
#include "runtime/prefix_store.h"
#include "runtime/sampler.h"

namespace dsv3 {

struct GenerateOptions {
  int64_t max_tokens = 256;
  SamplingParams sampling;
  bool ignore_eos = false;
  bool speculative = false;     // MTP speculative decoding (needs an MTP module)
  // > 0: MTP drafts pick among token ids [0, draft_vocab) only, so the draft head reads that
  // share of the vocabulary (BPE ids follow merge order: the low ids are the frequent tokens, the
  // idea of FR-Spec). Drafts only propose; the output is the same either way. 0: every id.
  // kDraftVocabAuto: see draft_vocab_rows.
  static constexpr int64_t kDraftVocabAuto = -1;
  int64_t draft_vocab = kDraftVocabAuto;
  int logprobs = -1;            // -1: none; else the chosen token's logprob and the top N (0..20)
  bool prompt_logprobs = false; // logprobs of every prompt token (echo / scoring)
  std::vector<int32_t> stop_ids;  // extra token ids that end generation (like EOS)
  // Constrained decoding: tokens are sampled (and logprobs computed) over the masked row.
  ConstraintFactory constraint;
};

// Head rows an MTP draft of a sequence reads, of a vocabulary of V ids, after the sequence has
// generated `generated` tokens, `past` of them with ids >= auto_draft_vocab(V). kDraftVocabAuto:
// the first quarter of the ids, unless more than 1/16 of at least 16 generated tokens lie past
// it (text whose frequent tokens have high ids, e.g. another script), then all of them: a token
// the draft cannot propose costs at most its own acceptance, so this bounds the loss. On the
// demo model (8,192 ids) the quarter keeps acceptance (70.7% -> 71.5%) and makes a draft cost
// 65 us instead of 140, against 280 for a plain step (README, "Demo model").
int64_t auto_draft_vocab(int64_t V);
int64_t draft_vocab_rows(int64_t draft_vocab, int64_t V, int64_t generated, int64_t past);

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

struct FinishInfo {
  std::string reason;  // "stop", "length", "cancelled", "error"
  std::string error;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens served from the prefix cache
  int64_t drafted = 0, accepted = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  std::vector<TokenLogprob> prompt_logprobs;  // [prompt]; entry 0 has token -1 (no logprob)
};

struct RequestCallbacks {
  // One generated token; return false to stop (stop string seen, client gone).
  std::function<bool(int32_t token, const TokenLogprob* lp)> on_token;
  std::function<void(const FinishInfo&)> on_finish;
};

struct EngineOptions {
  int64_t max_batch = 8;         // sequences decoding together
  int64_t prefill_chunk = 256;   // prompt tokens per sequence per step
  // MTP drafts only while at most this many sequences run (0: always). A draft adds a token to
  // every decoding sequence's step, which pays at batch 1 but not once a step's tokens already
  // keep the CPU busy (demo model, 1 thread: 0.80-0.88x aggregate at 2 streams, 0.83-0.86x at 4;
  // README, Demo model).
  // Above it, speculative sequences decode plainly (the same output) and the MTP module only
  // keeps its cache latents in step, so drafting resumes when the batch shrinks.
  int64_t draft_max_batch = 1;
  bool prefix_cache = true;
  std::shared_ptr<PrefixStore> store;  // optional second tier of the prefix cache (disk)
};

class Engine {
 public:
  Engine(Model& model, const EngineOptions& opt);
  ~Engine();

  // Validates (throws dsv3::Error for bad prompts/options) and queues a request; returns its id.
  int64_t submit(std::vector<int32_t> prompt, const GenerateOptions& opt, RequestCallbacks cb);
  void cancel(int64_t id);
  // Runs one batched forward; returns false when there was nothing to do.
  bool step();
  size_t active() const;   // running + waiting
  size_t waiting() const;
  int64_t last_batch_size() const { return last_batch_; }
  Model& model() { return model_; }

 private:
  struct Seq;
  struct PrefixEntry {
    int32_t block;
    bool mtp_valid;
    std::list<uint64_t>::iterator lru;
  };
  void admit();
  void retire();  // drops finished sequences, registering their blocks in the prefix cache
  void finish(Seq& s, const std::string& reason, const std::string& error = "");
  bool emit(Seq& s, int32_t tok, const float* logits);
  int32_t pick(Seq& s, const float*& row);
  void run_mtp(const std::vector<Seq*>& owners, bool drafting);
  void lookup_prefix(Seq& s);
  void register_prefix(Seq& s);
  bool evict_one();
  // A block from opt_.store entered into the in-memory prefix cache; prefix_.end() when absent.
  std::unordered_map<uint64_t, PrefixEntry>::iterator load_stored(uint64_t h, bool need_mtp);
  int32_t allocate_block();

  Model& model_;
  EngineOptions opt_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Seq>> pending_;
  std::vector<int64_t> cancelled_;
  std::vector<std::unique_ptr<Seq>> running_;
  int64_t next_id_ = 1;
  int64_t last_batch_ = 0;
  // Prefix cache: hash of (all tokens up to and including a full block) -> block holding it.
  std::unordered_map<uint64_t, PrefixEntry> prefix_;
  std::list<uint64_t> lru_;  // front: most recent
  std::vector<float> store_buf_;  // [layers, 64, dim] staging for opt_.store
};

}  // namespace dsv3
