#include "server/token_mask.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/tokenizer.h"

namespace dsv3::server {

VocabIndex::VocabIndex(const Tokenizer& tok) : vocab_(tok.vocab_limit()), eos_(tok.eos_id()) {
  bytes_.resize(static_cast<size_t>(vocab_));
  text_.assign(static_cast<size_t>(vocab_), 0);
  for (int32_t id = 0; id < vocab_; ++id) {
    if (!tok.has_token(id) || tok.is_special(id)) continue;
    const std::string_view b = tok.token_bytes(id);
    if (b.empty()) continue;
    // An added token such as <｜User｜> is one id only when special tokens are matched: it is a
    // control token, not text, even where the tokenizer does not flag it special.
    if (b.front() == '<') {
      try {
        const std::vector<int32_t> as_special = tok.encode(b, true), as_text = tok.encode(b, false);
        if (as_special.size() == 1 && as_special[0] == id && as_text != as_special) continue;
      } catch (const std::exception&) {
        // not valid UTF-8 on its own: an ordinary byte-level token
      }
    }
    bytes_[static_cast<size_t>(id)] = std::string(b);
    text_[static_cast<size_t>(id)] = 1;
    order_.push_back(id);
  }
  std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) { return bytes_[a] < bytes_[b]; });
  lcp_.assign(order_.size(), 0);
  for (size_t i = 0; i < order_.size(); ++i) {
    const std::string& cur = bytes_[static_cast<size_t>(order_[i])];
    max_len_ = std::max(max_len_, cur.size());
    if (i == 0) continue;
    const std::string& prev = bytes_[static_cast<size_t>(order_[i - 1])];
    size_t l = 0;
    while (l < prev.size() && l < cur.size() && l < 0xFFFF && prev[l] == cur[l]) ++l;
    lcp_[i] = static_cast<uint16_t>(l);
  }
}

JsonConstraint::JsonConstraint(std::shared_ptr<const JsonGrammar> g, std::shared_ptr<const VocabIndex> vocab,
                               std::shared_ptr<MaskCache> cache)
    : g_(std::move(g)), vocab_(std::move(vocab)), cache_(std::move(cache)), st_(*g_) {}

int64_t mask_logits(float* logits, int64_t V, const std::vector<uint64_t>* bits, std::span<const int32_t> also,
                    int32_t fallback) {
  const int64_t n = bits ? std::min<int64_t>(V, static_cast<int64_t>(bits->size()) * 64) : 0;
  std::vector<float> keep;  // the logits of `also` and the fallback, put back after masking
  for (int32_t t : also) keep.push_back(t >= 0 && t < V ? logits[t] : 0.0f);
  const float fb = fallback >= 0 && fallback < V ? logits[fallback] : 0.0f;
  int64_t kept = 0;
  for (int64_t v = 0; v < n; ++v) {
    if ((*bits)[static_cast<size_t>(v) / 64] >> (v % 64) & 1) ++kept;
    else logits[v] = -INFINITY;
  }
  for (int64_t v = n; v < V; ++v) logits[v] = -INFINITY;
  for (size_t i = 0; i < also.size(); ++i)
    if (also[i] >= 0 && also[i] < V) logits[also[i]] = keep[i], ++kept;
  // Sampling from an all -inf row must never happen (a byte-level vocabulary always has a way
  // on, so this is a guard, not a path).
  if (kept == 0 && fallback >= 0 && fallback < V) logits[fallback] = fb;
  return kept;
}

void JsonConstraint::mask(float* logits, int64_t V, int64_t left) {
  std::shared_ptr<const CachedMask> m = ended_ ? nullptr : cache_->get(*vocab_, st_.key(), st_);
  // The tokens left after this one must suffice to close the value: a byte-level vocabulary has
  // a token for every byte, so a state needing c bytes closes within c tokens. Only near the
  // end of max_tokens does this drop anything; if nothing would remain, the plain mask stays.
  if (m && left > 0 && m->max_close > left - 1) {
    const int limit = static_cast<int>(std::min<int64_t>(left - 1, INT_MAX - 1));
    auto tight = cache_->get(*vocab_, st_.key(), st_, limit);
    if (std::any_of(tight->bits.begin(), tight->bits.end(), [](uint64_t w) { return w != 0; })) m = tight;
  }
  const int32_t eos = vocab_->eos();
  const bool done = !ended_ && st_.complete();  // EOS once the value is complete
  mask_logits(logits, V, m ? &m->bits : nullptr, std::span<const int32_t>(&eos, done ? 1 : 0), eos);
}

void JsonConstraint::accept(int32_t token) {
  if (ended_) return;
  if (token == vocab_->eos() || !vocab_->is_text(token) || !st_.advance(vocab_->bytes(token))) ended_ = true;
}

ConstraintFactory json_constraint(std::shared_ptr<const JsonGrammar> g, std::shared_ptr<const VocabIndex> vocab) {
  auto cache = std::make_shared<MaskCache>();
  return [g, vocab, cache] { return std::make_unique<JsonConstraint>(g, vocab, cache); };
}

}  // namespace dsv3::server
