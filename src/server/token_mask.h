// Token masks for constrained decoding over a byte-level vocabulary: which tokens' bytes a
// JsonGrammarState accepts next. The vocabulary is indexed once per tokenizer (token byte strings
// sorted, with the common-prefix length of each with the one before), so one walk shares the work
// of every prefix, and a byte rejected for one token rejects at once all later tokens that share
// the prefix up to it. Masks are cached by the automaton state (JsonGrammarState::key), which
// repeats a lot: every token inside a plain string leaves the same state.
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/constraint.h"
#include "server/json_grammar.h"

namespace dsv3 {
class Tokenizer;
}

namespace dsv3::server {

class VocabIndex {
 public:
  // Control tokens (<｜User｜>, <｜tool▁sep｜>, BOS/EOS ...) and ids without bytes are never
  // candidates: they are not text. EOS is allowed separately, once the value is complete.
  explicit VocabIndex(const Tokenizer& tok);
  int32_t vocab() const { return vocab_; }     // mask length: the tokenizer's id range
  int32_t eos() const { return eos_; }
  std::string_view bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  bool is_text(int32_t id) const { return id >= 0 && id < vocab_ && text_[static_cast<size_t>(id)]; }

  // Bit v of the result: token v's bytes take `from` to a state that is still valid. [vocab/64]
  // State: a byte automaton with copy_from(const State&) and advance(uint8_t) -> bool. Where it
  // also has min_close() (bytes still needed to finish), tokens whose end state needs more than
  // `limit` are left out, and *max_close gets the largest need among the tokens kept.
  template <class State>
  std::vector<uint64_t> allowed(const State& from, int limit = INT_MAX, int* max_close = nullptr) const {
    std::vector<uint64_t> mask((static_cast<size_t>(vocab_) + 63) / 64, 0);
    // states[d]: `from` after the first d bytes of the current candidate. Valid up to the depth
    // the previous candidate reached, which covers the prefix the current one shares with it.
    thread_local std::vector<State> states;
    if (states.size() < max_len_ + 1) states.resize(max_len_ + 1);
    states[0].copy_from(from);
    size_t fail_at = SIZE_MAX;  // byte at which the previous candidate was rejected
    for (size_t i = 0; i < order_.size(); ++i) {
      const size_t shared = lcp_[i];
      if (fail_at < shared) continue;  // it has the very byte that was rejected, after the same prefix
      const std::string& b = bytes_[static_cast<size_t>(order_[i])];
      fail_at = SIZE_MAX;
      for (size_t d = shared; d < b.size(); ++d) {
        states[d + 1].copy_from(states[d]);
        if (!states[d + 1].advance(static_cast<uint8_t>(b[d]))) {
          fail_at = d;
          break;
        }
      }
      if (fail_at != SIZE_MAX) continue;
      if constexpr (requires(const State& s) { s.min_close(); }) {
        const int need = states[b.size()].min_close();
        if (need > limit) continue;
        if (max_close) *max_close = std::max(*max_close, need);
      }
      mask[static_cast<size_t>(order_[i]) / 64] |= 1ull << (order_[i] % 64);
    }
    return mask;
  }

 private:
  int32_t vocab_ = 0, eos_ = 1;
  std::vector<std::string> bytes_;  // [vocab]
  std::vector<uint8_t> text_;       // [vocab] 1: a candidate
  std::vector<int32_t> order_;      // candidate ids sorted by bytes
  std::vector<uint16_t> lcp_;       // [order_] common prefix with the previous candidate
  size_t max_len_ = 0;
};

struct CachedMask {
  std::vector<uint64_t> bits;  // [vocab/64] VocabIndex::allowed
  int max_close = 0;           // the most bytes any allowed token leaves to finish the value
};

// Masks shared by the choices of one request (they walk the same grammar); the engine's single
// step thread is the only caller, the lock only keeps that assumption from being load-bearing.
class MaskCache {
 public:
  static constexpr size_t kMaxEntries = 256;  // 256 x 16 KB for the 129K V3 vocabulary
  // `key` identifies the state's future (State::key()); the mask (for `limit`, see
  // VocabIndex::allowed) is computed on a miss.
  template <class State>
  std::shared_ptr<const CachedMask> get(const VocabIndex& vocab, std::string_view key, const State& st,
                                        int limit = INT_MAX) {
    std::string k(key);
    if (limit != INT_MAX) k.append(reinterpret_cast<const char*>(&limit), sizeof limit);
    std::lock_guard<std::mutex> lk(mu_);
    auto it = map_.find(k);
    if (it != map_.end()) {
      ++hits_;
      return it->second;
    }
    ++misses_;
    if (map_.size() >= kMaxEntries) map_.clear();  // states rarely recur after this many
    auto m = std::make_shared<CachedMask>();
    m->bits = vocab.allowed(st, limit, &m->max_close);
    map_.emplace(std::move(k), m);
    return m;
  }
  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const CachedMask>> map_;
  size_t hits_ = 0, misses_ = 0;
};

// Sets logits[v] = -inf unless bit v of `bits` (null: no bits) is set or v is in `also`; when
// nothing is left, `fallback` (EOS) keeps its logit. Returns how many tokens stay. logits: [V]
int64_t mask_logits(float* logits, int64_t V, const std::vector<uint64_t>* bits, std::span<const int32_t> also,
                    int32_t fallback);

// Constrains generation to one JSON value of `grammar`, then EOS.
class JsonConstraint : public TokenConstraint {
 public:
  JsonConstraint(std::shared_ptr<const JsonGrammar> g, std::shared_ptr<const VocabIndex> vocab,
                 std::shared_ptr<MaskCache> cache);
  void mask(float* logits, int64_t V, int64_t left) override;
  void accept(int32_t token) override;
  const JsonGrammarState& state() const { return st_; }

 private:
  std::shared_ptr<const JsonGrammar> g_;
  std::shared_ptr<const VocabIndex> vocab_;
  std::shared_ptr<MaskCache> cache_;
  JsonGrammarState st_;
  bool ended_ = false;  // EOS (or a token off the grammar) was taken
};

ConstraintFactory json_constraint(std::shared_ptr<const JsonGrammar> g, std::shared_ptr<const VocabIndex> vocab);

}  // namespace dsv3::server
