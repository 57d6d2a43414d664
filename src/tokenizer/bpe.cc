#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace dsv3 {

void PairMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap *= 2;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  size_ = 0;
  for (const Slot& s : old)
    if (s.key != kEmpty) insert(int32_t(s.key >> 32), int32_t(uint32_t(s.key)), s.value);
}

void PairMap::insert(int32_t a, int32_t b, Value v) {
  if ((size_ + 1) * 2 > slots_.size()) reserve(std::max<size_t>(16, size_ * 2 + 2));
  uint64_t k = key(a, b);
  for (size_t i = slot(k);; i = (i + 1) & mask_) {
    if (slots_[i].key == k) {
      slots_[i].value = v;
      return;
    }
    if (slots_[i].key == kEmpty) {
      slots_[i] = {k, v};
      ++size_;
      return;
    }
  }
}

BpeModel::BpeModel(const std::array<int32_t, 256>& byte_ids)
    : byte_ids_(byte_ids), byte_pairs_(256 * 256, PairMap::Value{-1, -1}) {
  int32_t max_id = *std::max_element(byte_ids.begin(), byte_ids.end());
  byte_of_id_.assign(max_id + 1, -1);
  for (int b = 0; b < 256; ++b) byte_of_id_[byte_ids[b]] = static_cast<int16_t>(b);
}

void BpeModel::add_merge(int32_t a, int32_t b, int32_t merged) {
  PairMap::Value v{next_rank_++, merged};
  merges_.insert(a, b, v);
  auto byte_of = [&](int32_t id) { return id < int32_t(byte_of_id_.size()) ? byte_of_id_[id] : -1; };
  if (byte_of(a) >= 0 && byte_of(b) >= 0) byte_pairs_[byte_of(a) * 256 + byte_of(b)] = v;
}

namespace {
uint64_t word_hash(std::string_view s) {  // FNV-1a with a final mix; words are short
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h ^ (h >> 32);
}
}  // namespace

bool BpeModel::cache_get(uint64_t h, std::string_view word, std::vector<int32_t>& out) const {
  size_t i = h & (kLines - 1);
  std::lock_guard lock(locks_[i % kLocks]);
  const Line& l = lines_[i];
  if (l.hash != h || l.key_len != word.size() || std::memcmp(l.key, word.data(), word.size()) != 0) return false;
  out.insert(out.end(), l.ids, l.ids + l.num_ids);
  return true;
}

void BpeModel::cache_put(uint64_t h, std::string_view word, const int32_t* ids, size_t n) const {
  size_t i = h & (kLines - 1);
  std::lock_guard lock(locks_[i % kLocks]);
  Line& l = lines_[i];
  l.hash = h;
  l.key_len = static_cast<uint8_t>(word.size());
  l.num_ids = static_cast<uint8_t>(n);
  std::memcpy(l.key, word.data(), word.size());
  std::memcpy(l.ids, ids, n * sizeof(int32_t));
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {  // single bytes never merge
    out.push_back(byte_ids_[static_cast<uint8_t>(word[0])]);
    return;
  }
  if (word.size() > kMaxKey) {
    merge(word, out);
    return;
  }
  uint64_t h = word_hash(word);
  if (cache_get(h, word, out)) return;
  size_t first = out.size();
  merge(word, out);
  if (out.size() - first <= kMaxIds) cache_put(h, word, out.data() + first, out.size() - first);
}

void BpeModel::merge(std::string_view word, std::vector<int32_t>& out) const {
  if (whole_words_.size() > 0) {
    if (const int32_t* id = whole_words_.find(word)) {
      out.push_back(*id);
      return;
    }
  }
  // Symbols form a linked list over positions [0, n); a merged-away symbol gets id -1.
  struct Symbol {
    int32_t id, prev, next;
  };
  thread_local std::vector<Symbol> sym;
  const int32_t n = static_cast<int32_t>(word.size());
  sym.resize(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {byte_ids_[static_cast<uint8_t>(word[i])], i - 1, i + 1};

  // Candidate merges ordered by (rank, left position): the smallest is the next merge. A
  // candidate goes stale when either symbol changes; it remembers both ids to notice that
  // without another hash lookup (a symbol's id only ever grows into a longer token).
  struct Cand {
    uint64_t order;  // rank << 32 | left position
    int32_t left_id, right_id, merged;
    bool operator>(const Cand& o) const { return order > o.order; }
  };
  thread_local std::vector<Cand> heap;  // min-heap via std::greater
  heap.clear();
  auto push = [&](int32_t left, int32_t right, PairMap::Value v) {
    heap.push_back({(uint64_t(uint32_t(v.rank)) << 32) | uint32_t(left), sym[left].id, sym[right].id, v.id});
    std::push_heap(heap.begin(), heap.end(), std::greater<Cand>{});
  };
  auto push_pair = [&](int32_t left) {
    int32_t right = sym[left].next;
    if (right >= n) return;
    if (const PairMap::Value* v = merges_.find(sym[left].id, sym[right].id)) push(left, right, *v);
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    PairMap::Value v = byte_pairs_[static_cast<uint8_t>(word[i]) * 256 + static_cast<uint8_t>(word[i + 1])];
    if (v.rank >= 0) push(i, i + 1, v);
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Cand>{});
    Cand c = heap.back();
    heap.pop_back();
    int32_t left = int32_t(uint32_t(c.order));
    if (sym[left].id < 0) continue;  // merged into its left neighbour
    int32_t right = sym[left].next;
    if (right >= n || sym[left].id != c.left_id || sym[right].id != c.right_id) continue;
    sym[left].id = c.merged;
    sym[left].next = sym[right].next;
    sym[right].id = -1;
    if (sym[right].next < n) sym[sym[right].next].prev = left;
    if (sym[left].prev >= 0) push_pair(sym[left].prev);
    push_pair(left);
  }
  for (int32_t i = 0; i < n; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace dsv3
