// BPE merges over byte-level symbols. A word (one pre-token, as raw bytes) starts as one symbol
// per byte and repeatedly merges the adjacent pair with the lowest merge rank, leftmost first -
// the order Hugging Face's priority queue produces. Results of short words are cached.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/string_map.h"

namespace dsv3 {

// Open-addressing map from a pair of ids to (rank, merged id); the merge table is read on every
// pair of every uncached word, so it avoids std::unordered_map's node chasing.
class PairMap {
 public:
  struct Value {
    int32_t rank;
    int32_t id;
  };
  void reserve(size_t n);
  void insert(int32_t a, int32_t b, Value v);  // replaces an existing entry
  const Value* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i].value;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t key(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }
  size_t slot(uint64_t k) const { return (k * 0x9E3779B97F4A7C15ull) >> shift_; }
  struct Slot {  // key and value side by side: one cache miss per lookup
    uint64_t key = kEmpty;
    Value value{};
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

class BpeModel {
 public:
  // byte_ids[b]: the id of the single-byte token for byte b.
  explicit BpeModel(const std::array<int32_t, 256>& byte_ids);
  // Merges in rank order: (a, b) -> merged. A repeated pair keeps the later rank (as in HF).
  void add_merge(int32_t a, int32_t b, int32_t merged);
  void reserve(size_t n) { merges_.reserve(n); }
  // ignore_merges: words that are whole vocab entries (keyed by raw bytes) skip merging.
  void set_whole_words(StringIdMap words) { whole_words_ = std::move(words); }

  // Appends the ids of one pre-token (raw bytes, non-empty).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  void merge(std::string_view word, std::vector<int32_t>& out) const;

  std::array<int32_t, 256> byte_ids_;
  std::vector<int16_t> byte_of_id_;  // inverse of byte_ids_, -1 for longer tokens
  // Every word starts as bytes, so the first round of pair lookups uses this dense table
  // ([256 * 256], 512 KB, stays in cache) instead of the hash map. rank -1: no merge.
  std::vector<PairMap::Value> byte_pairs_;
  PairMap merges_;
  int32_t next_rank_ = 0;
  StringIdMap whole_words_;

  // Word -> ids cache: direct-mapped like a CPU cache, one 64-byte line per entry so a lookup
  // costs at most one memory miss; a colliding word simply replaces the old one. Words longer
  // than kMaxKey bytes or with more than kMaxIds ids are not cached. Lines are guarded by
  // striped mutexes so that const encode() may run on several threads.
  static constexpr size_t kMaxKey = 30, kMaxIds = 6, kLines = 1 << 15, kLocks = 64;
  struct alignas(64) Line {
    uint64_t hash = 0;
    uint8_t key_len = 0, num_ids = 0;  // key_len 0: empty
    char key[kMaxKey];
    int32_t ids[kMaxIds];
  };
  static_assert(sizeof(Line) == 64);
  bool cache_get(uint64_t h, std::string_view word, std::vector<int32_t>& out) const;
  void cache_put(uint64_t h, std::string_view word, const int32_t* ids, size_t n) const;
  mutable std::vector<Line> lines_ = std::vector<Line>(kLines);
  mutable std::array<std::mutex, kLocks> locks_;
};

}  // namespace dsv3
