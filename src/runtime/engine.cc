#include "runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "core/log.h"

namespace dsv3 {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

uint64_t hash_block(uint64_t parent, const int32_t* toks, int64_t n) {
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int64_t i = 0; i < n; ++i) {
    h ^= static_cast<uint64_t>(static_cast<uint32_t>(toks[i])) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
  return h;
}
}  // namespace

int64_t auto_draft_vocab(int64_t V) { return std::min(V, ((V + 3) / 4 + 63) / 64 * 64); }

int64_t draft_vocab_rows(int64_t draft_vocab, int64_t V, int64_t generated, int64_t past) {
  if (draft_vocab > 0) return std::min(draft_vocab, V);
  if (draft_vocab == 0 || (generated >= 16 && past * 16 > generated)) return V;
  return auto_draft_vocab(V);
}

struct Engine::Seq {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t n_prompt = 0;
  GenerateOptions opt;
  RequestCallbacks cb;
  Sampler sampler;
  std::unique_ptr<TokenConstraint> constraint;
  std::vector<float> masked;  // [V] the last row after constraint->mask
  SeqCache cache;
  int64_t processed = 0;  // tokens whose latents are in the cache (== cache.len between steps)
  // MTP speculative decoding: final hidden states of positions [mtp_len, processed) not yet fed
  // to the MTP module, and the token it drafted for position processed+1.
  std::vector<float> pending_hidden;
  int64_t mtp_len = 0;
  int32_t draft = -1;
  int64_t past_draft = 0;  // generated tokens with ids >= auto_draft_vocab (see draft_vocab_rows)
  FinishInfo info;
  bool done = false;
  Clock::time_point t_start, t_first;
  explicit Seq(const SamplingParams& p) : sampler(p) {}
  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - n_prompt; }
};

Engine::Engine(Model& model, const EngineOptions& opt) : model_(model), opt_(opt) {
  if (opt_.max_batch <= 0) fail("max batch must be positive");
  if (opt_.prefill_chunk <= 0) fail("prefill chunk must be positive");
}

Engine::~Engine() {
  for (auto& s : running_) free_seq(model_.cache(), s->cache);
  for (auto& [h, e] : prefix_) model_.cache().release(e.block);
}

int64_t Engine::submit(std::vector<int32_t> prompt, const GenerateOptions& opt, RequestCallbacks cb) {
  const ModelConfig& c = model_.config();
  if (prompt.empty()) fail("the prompt is empty");
  for (int32_t t : prompt)
    if (t < 0 || t >= c.vocab_size) fail("token id {} is outside the vocabulary (0..{})", t, c.vocab_size - 1);
  if (opt.max_tokens < 0) fail("max_tokens must be >= 0 (got {})", opt.max_tokens);
  if (opt.draft_vocab < GenerateOptions::kDraftVocabAuto)
    fail("the draft vocabulary must be >= 0, or auto (got {})", opt.draft_vocab);
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n > model_.ctx()) fail("the prompt has {} tokens, more than the context of {}", n, model_.ctx());
  if (opt.logprobs > 20) fail("logprobs must be at most 20 (got {})", opt.logprobs);
  if (opt.speculative && !model_.has_mtp()) fail("speculative decoding needs an MTP module; this checkpoint has none");
  opt.sampling.validate();
  auto s = std::make_unique<Seq>(opt.sampling);
  s->tokens = std::move(prompt);
  s->n_prompt = n;
  s->opt = opt;
  s->opt.max_tokens = std::min(opt.max_tokens, model_.ctx() - n);  // never past the context
  s->cb = std::move(cb);
  if (opt.constraint) s->constraint = opt.constraint();
  s->info.prompt_tokens = n;
  std::lock_guard<std::mutex> lk(mu_);
  s->id = next_id_++;
  const int64_t id = s->id;
  pending_.push_back(std::move(s));
  return id;
}

void Engine::cancel(int64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  cancelled_.push_back(id);
}

size_t Engine::active() const {
  std::lock_guard<std::mutex> lk(mu_);
  return pending_.size() + running_.size();
}

size_t Engine::waiting() const {
  std::lock_guard<std::mutex> lk(mu_);
  return pending_.size();
}

bool Engine::evict_one() {
  if (lru_.empty()) return false;
  const uint64_t h = lru_.back();
  lru_.pop_back();
  auto it = prefix_.find(h);
  model_.cache().release(it->second.block);
  prefix_.erase(it);
  return true;
}

void Engine::lookup_prefix(Seq& s) {
  if (!opt_.prefix_cache) return;
  const int64_t B = KVCache::kBlockSize;
  uint64_t h = 0;
  // Keep at least one prompt token to run, so the last prompt position yields logits.
  for (int64_t b = 0; (b + 1) * B <= s.n_prompt - 1; ++b) {
    h = hash_block(h, s.tokens.data() + b * B, B);
    if (s.opt.prompt_logprobs) break;
    auto it = prefix_.find(h);
    if (it == prefix_.end() && opt_.store) it = load_stored(h, s.opt.speculative);
    if (it == prefix_.end() || (s.opt.speculative && !it->second.mtp_valid)) break;
    model_.cache().retain(it->second.block);
    s.cache.blocks.push_back(it->second.block);
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  s.processed = s.cache.len = static_cast<int64_t>(s.cache.blocks.size()) * B;
  s.mtp_len = s.processed;
  s.info.cached_tokens = s.processed;
}

std::unordered_map<uint64_t, Engine::PrefixEntry>::iterator Engine::load_stored(uint64_t h, bool need_mtp) {
  KVCache& kv = model_.cache();
  const int64_t per_layer = KVCache::kBlockSize * kv.dim();
  store_buf_.resize(static_cast<size_t>(kv.layers() * per_layer));
  bool mtp = false;
  if (!opt_.store->load(h, store_buf_, &mtp) || (need_mtp && !mtp)) return prefix_.end();
  if (kv.free_blocks() == 0 && !evict_one()) return prefix_.end();
  const int32_t blk = kv.allocate();  // its one reference is the prefix cache's
  for (int64_t l = 0; l < kv.layers(); ++l) kv.write(l, blk, 0, store_buf_.data() + l * per_layer, KVCache::kBlockSize);
  lru_.push_front(h);
  return prefix_.emplace(h, PrefixEntry{blk, mtp, lru_.begin()}).first;
}

void Engine::register_prefix(Seq& s) {
  if (!opt_.prefix_cache) return;
  const int64_t B = KVCache::kBlockSize;
  uint64_t h = 0;
  for (int64_t b = 0; (b + 1) * B <= s.cache.len && b < static_cast<int64_t>(s.cache.blocks.size()); ++b) {
    h = hash_block(h, s.tokens.data() + b * B, B);
    if (prefix_.count(h)) continue;
    const int32_t blk = s.cache.blocks[static_cast<size_t>(b)];
    model_.cache().retain(blk);
    lru_.push_front(h);
    const bool mtp_valid = s.opt.speculative && s.mtp_len >= (b + 1) * B;
    prefix_[h] = PrefixEntry{blk, mtp_valid, lru_.begin()};
    if (opt_.store) {  // the store writes it off this thread
      KVCache& kv = model_.cache();
      const int64_t per_layer = B * kv.dim();
      std::vector<float> data(static_cast<size_t>(kv.layers() * per_layer));
      for (int64_t l = 0; l < kv.layers(); ++l) kv.read(l, blk, 0, data.data() + l * per_layer, B);
      opt_.store->save(h, mtp_valid, std::move(data));
    }
  }
}

void Engine::finish(Seq& s, const std::string& reason, const std::string& error) {
  if (s.done) return;
  s.done = true;
  s.info.reason = reason;
  s.info.error = error;
  s.info.completion_tokens = s.generated();
  if (s.generated() > 0) s.info.decode_seconds = seconds_since(s.t_first);
  if (s.cb.on_finish) s.cb.on_finish(s.info);
}

// Samples the next token from `row`, masked by the sequence's constraint first; `row` then points
// at the masked copy, so the logprobs emit() reports are over the distribution actually sampled.
int32_t Engine::pick(Seq& s, const float*& row) {
  const int64_t V = model_.config().vocab_size;
  if (s.constraint) {
    s.masked.assign(row, row + V);
    s.constraint->mask(s.masked.data(), V, s.opt.max_tokens - s.generated());
    row = s.masked.data();
  }
  return s.sampler.sample(row, V, std::span(s.tokens.data(), static_cast<size_t>(s.n_prompt)),
                          std::span(s.tokens.data() + s.n_prompt, static_cast<size_t>(s.generated())));
}

// Appends a sampled token, reports it, and applies the stop rules. Returns false when done.
bool Engine::emit(Seq& s, int32_t tok, const float* logits) {
  if (s.generated() == 0) {
    s.t_first = Clock::now();
    s.info.prefill_seconds = seconds_since(s.t_start);
  }
  s.tokens.push_back(tok);
  if (tok >= auto_draft_vocab(model_.config().vocab_size)) ++s.past_draft;
  if (s.constraint) s.constraint->accept(tok);
  TokenLogprob lp;
  if (s.opt.logprobs >= 0) {
    std::vector<float> lsm;
    log_softmax(logits, model_.config().vocab_size, lsm);
    lp.token = tok;
    lp.logprob = lsm[static_cast<size_t>(tok)];
    lp.top = top_logprobs(lsm, s.opt.logprobs);
  }
  const ModelConfig& c = model_.config();
  bool stop = false;
  if (!s.opt.ignore_eos) {
    for (int64_t e : c.eos_token_ids) stop |= tok == e;
    for (int32_t e : s.opt.stop_ids) stop |= tok == e;
  }
  const bool go_on = s.cb.on_token ? s.cb.on_token(tok, s.opt.logprobs >= 0 ? &lp : nullptr) : true;
  if (stop || !go_on) {
    finish(s, "stop");
    return false;
  }
  if (s.generated() >= s.opt.max_tokens) {
    finish(s, "length");
    return false;
  }
  return true;
}

void Engine::admit() {
  std::vector<std::unique_ptr<Seq>> incoming, dropped;
  std::vector<int64_t> cancelled;
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancelled.swap(cancelled_);
    for (int64_t id : cancelled)
      for (auto& s : pending_)
        if (s && s->id == id) dropped.push_back(std::move(s));
    pending_.erase(std::remove(pending_.begin(), pending_.end(), nullptr), pending_.end());
    while (!pending_.empty() && static_cast<int64_t>(running_.size() + incoming.size()) < opt_.max_batch) {
      incoming.push_back(std::move(pending_.front()));
      pending_.erase(pending_.begin());
    }
  }
  // Callbacks run outside the lock, so they may call back into the engine.
  for (auto& s : dropped) finish(*s, "cancelled");
  for (int64_t id : cancelled)
    for (auto& s : running_)
      if (s->id == id) finish(*s, "cancelled");
  for (auto& s : incoming) {
    s->t_start = Clock::now();
    lookup_prefix(*s);
    running_.push_back(std::move(s));
  }
}

void Engine::retire() {
  for (auto& s : running_)
    if (s->done) {
      register_prefix(*s);
      free_seq(model_.cache(), s->cache);
    }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done; }), running_.end());
}

bool Engine::step() {
  // Sequences that finished last step leave first, keeping their blocks as cached prefixes, so
  // a request that arrived meanwhile (e.g. the same prompt again) finds them; then newcomers
  // join, and those cancelled meanwhile leave too.
  retire();
  admit();
  retire();
  if (running_.empty()) {
    last_batch_ = 0;
    return false;
  }
  const ModelConfig& c = model_.config();
  const int64_t V = c.vocab_size, H = c.hidden_size, B = KVCache::kBlockSize;

  // Plan this step's inputs; make room in the cache by evicting cached prefixes (LRU).
  std::vector<SeqInput> batch;
  std::vector<Seq*> owners;
  std::vector<int32_t> decode_in(running_.size() * 2);
  const bool drafting = opt_.draft_max_batch <= 0 || static_cast<int64_t>(running_.size()) <= opt_.draft_max_batch;
  bool want_hidden = false;
  int64_t planned = 0;
  for (size_t i = 0; i < running_.size(); ++i) {
    Seq& s = *running_[i];
    SeqInput in;
    in.cache = &s.cache;
    in.start = s.processed;
    if (s.processed < s.n_prompt) {
      const int64_t k = std::min(opt_.prefill_chunk, s.n_prompt - s.processed);
      in.tokens = std::span<const int32_t>(s.tokens.data() + s.processed, static_cast<size_t>(k));
      in.all_logits = s.opt.prompt_logprobs;
    } else {
      decode_in[2 * i] = s.tokens.back();
      int64_t k = 1;
      if (drafting && s.draft >= 0 && s.processed + 2 <= model_.ctx()) decode_in[2 * i + 1] = s.draft, k = 2;
      else s.draft = -1;
      in.tokens = std::span<const int32_t>(decode_in.data() + 2 * i, static_cast<size_t>(k));
      in.all_logits = k == 2;
    }
    // Blocks this sequence will add (+1 for a copy-on-write of a shared block), on top of what
    // the sequences planned before it in this step take.
    const int64_t grow_by = (in.start + static_cast<int64_t>(in.tokens.size()) + B - 1) / B -
                            static_cast<int64_t>(s.cache.blocks.size());
    const int64_t need = planned + grow_by + 1;
    while (model_.cache().free_blocks() < need && evict_one()) {
    }
    if (model_.cache().free_blocks() < need) {
      finish(s, "length", "the KV cache is full");
      continue;
    }
    planned += std::max<int64_t>(grow_by, 0);
    want_hidden |= s.opt.speculative;
    batch.push_back(in);
    owners.push_back(&s);
  }
  last_batch_ = static_cast<int64_t>(batch.size());
  if (batch.empty()) return true;

  ForwardOutput out;
  try {
    model_.forward(batch, out, want_hidden);
  } catch (const Error& e) {
    for (Seq* s : owners) finish(*s, "error", e.what());
    return true;
  }

  // Consume logits row by row in input order.
  int64_t row = 0, hrow = 0;
  std::vector<float> lsm;
  std::vector<std::pair<Seq*, const float*>> first;  // sequences whose prompt is done: last row
  for (size_t bi = 0; bi < batch.size(); ++bi) {
    Seq& s = *owners[bi];
    const SeqInput& in = batch[bi];
    const int64_t k = static_cast<int64_t>(in.tokens.size());
    const float* hid = want_hidden ? out.hidden.data() + hrow * H : nullptr;
    hrow += k;
    const int64_t nrows = in.all_logits ? k : 1;
    const float* rows = out.logits.data() + row * V;
    row += nrows;
    if (s.processed < s.n_prompt) {  // prefill chunk
      if (s.opt.prompt_logprobs) {
        if (s.info.prompt_logprobs.empty()) s.info.prompt_logprobs.push_back(TokenLogprob{});
        for (int64_t r = 0; r < k && s.processed + r + 1 < s.n_prompt; ++r) {
          log_softmax(rows + r * V, V, lsm);
          const int32_t nxt = s.tokens[static_cast<size_t>(s.processed + r + 1)];
          s.info.prompt_logprobs.push_back({nxt, lsm[static_cast<size_t>(nxt)], top_logprobs(lsm, std::max(0, s.opt.logprobs))});
        }
      }
      if (s.opt.speculative) s.pending_hidden.insert(s.pending_hidden.end(), hid, hid + k * H);
      s.processed += k;
      if (s.processed == s.n_prompt) {
        if (s.opt.max_tokens == 0) {
          s.info.prefill_seconds = seconds_since(s.t_start);
          finish(s, "length");
          continue;
        }
        first.emplace_back(&s, rows + (nrows - 1) * V);
      }
      continue;
    }
    // Decode (and verification of the draft, when there is one).
    const float* row0 = rows;
    const int32_t x = pick(s, row0);
    if (k == 2) {
      ++s.info.drafted;
      if (x == s.draft) {
        ++s.info.accepted;
        s.processed += 2;
        if (s.opt.speculative) s.pending_hidden.insert(s.pending_hidden.end(), hid, hid + 2 * H);
        if (emit(s, x, row0)) {  // the second row is masked by the state after x
          const float* row1 = rows + V;
          const int32_t y = pick(s, row1);
          emit(s, y, row1);
        }
      } else {
        s.processed += 1;
        truncate_seq(model_.cache(), s.cache, s.processed);  // the draft's latents are void
        if (s.opt.speculative) s.pending_hidden.insert(s.pending_hidden.end(), hid, hid + H);
        emit(s, x, row0);
      }
      s.draft = -1;
    } else {
      s.processed += 1;
      if (s.opt.speculative) s.pending_hidden.insert(s.pending_hidden.end(), hid, hid + H);
      emit(s, x, row0);
    }
  }

  // A finished prompt's first token comes after the MTP module has read the prompt (all but its
  // last position, whose next token is the first one): that is prefill work, so it counts in the
  // time to the first token, as the main model's does, and not in decode; so do the first
  // draft's one-time checks of the MTP weights.
  if (!first.empty()) {
    run_mtp(owners, drafting);
    for (auto [s, last] : first) {
      if (s->done) continue;  // the MTP module failed
      const int32_t t = pick(*s, last);  // `last` becomes the masked row
      emit(*s, t, last);
    }
  }
  run_mtp(owners, drafting);
  return true;
}

// MTP: feeds the new hidden states whose next token is known (with those tokens) to the MTP
// module, which keeps its own latent cache in step, and drafts the token after the last one
// (unless !drafting: then only the latents).
void Engine::run_mtp(const std::vector<Seq*>& owners, bool drafting) {
  const int64_t V = model_.config().vocab_size, H = model_.config().hidden_size;
  std::vector<SeqInput> mtp_batch;
  std::vector<Seq*> mtp_owners;
  for (Seq* s : owners) {
    if (s->done || !s->opt.speculative) continue;
    const int64_t cnt = std::min(static_cast<int64_t>(s->pending_hidden.size()) / H,
                                 static_cast<int64_t>(s->tokens.size()) - 1 - s->mtp_len);
    if (cnt <= 0) continue;
    SeqInput in;
    in.cache = &s->cache;
    in.start = s->mtp_len;
    in.tokens = std::span<const int32_t>(s->tokens.data() + s->mtp_len + 1, static_cast<size_t>(cnt));
    in.hidden = s->pending_hidden.data();
    mtp_batch.push_back(in);
    mtp_owners.push_back(s);
  }
  if (!mtp_batch.empty()) {
    ForwardOutput mo;
    // Head rows a sequence's drafts choose from; the batch computes the widest of them.
    auto draft_rows = [V](const Seq& s) { return draft_vocab_rows(s.opt.draft_vocab, V, s.generated(), s.past_draft); };
    int64_t width = 0;
    for (Seq* s : mtp_owners) width = std::max(width, draft_rows(*s));
    try {
      model_.forward_mtp(mtp_batch, mo, width, drafting);
      for (size_t i = 0; i < mtp_owners.size(); ++i) {
        Seq& s = *mtp_owners[i];
        const int64_t cnt = static_cast<int64_t>(mtp_batch[i].tokens.size());
        s.mtp_len += cnt;
        s.pending_hidden.erase(s.pending_hidden.begin(), s.pending_hidden.begin() + cnt * H);
        const bool decoding = s.processed == static_cast<int64_t>(s.tokens.size()) - 1;
        s.draft = drafting && decoding ? argmax(mo.logits.data() + static_cast<int64_t>(i) * width, draft_rows(s)) : -1;
      }
    } catch (const Error& e) {
      for (Seq* s : mtp_owners) finish(*s, "error", e.what());
    }
  }
}

}  // namespace dsv3
