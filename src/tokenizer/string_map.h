// Flat open-addressing map from strings to ids, keys packed in one buffer. Loading does ~400K
// lookups of 128K vocab strings; std::unordered_map spends most of the load time chasing nodes.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class StringIdMap {
 public:
  void reserve(size_t n);
  void insert_or_assign(std::string_view key, int32_t id);
  // nullptr when absent.
  const int32_t* find(std::string_view key) const {
    if (slots_.empty()) return nullptr;
    uint64_t h = hash(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.len == kEmpty) return nullptr;
      if (s.hash == uint32_t(h) && key_of(s) == key) return &s.id;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint32_t kEmpty = ~0u;
  struct Slot {
    uint32_t off = 0, len = kEmpty, hash = 0;
    int32_t id = 0;
  };
  static uint64_t hash(std::string_view s) {  // FNV-1a, then a final mix for the low bits
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h ^ (h >> 29);
  }
  std::string_view key_of(const Slot& s) const { return std::string_view(keys_).substr(s.off, s.len); }
  void place(const Slot& s);

  std::string keys_;
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

}  // namespace dsv3
