#include "tokenizer/string_map.h"

#include "core/error.h"

namespace dsv3 {

void StringIdMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap *= 2;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  for (const Slot& s : old)
    if (s.len != kEmpty) place(s);
}

void StringIdMap::place(const Slot& s) {
  for (size_t i = s.hash & mask_;; i = (i + 1) & mask_) {
    if (slots_[i].len == kEmpty) {
      slots_[i] = s;
      return;
    }
  }
}

void StringIdMap::insert_or_assign(std::string_view key, int32_t id) {
  if ((size_ + 1) * 2 > slots_.size()) reserve(size_ * 2 + 16);
  uint64_t h = hash(key);
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.len == kEmpty) {
      if (keys_.size() + key.size() > UINT32_MAX) fail("tokenizer: vocabulary strings exceed 4 GB");
      s = Slot{uint32_t(keys_.size()), uint32_t(key.size()), uint32_t(h), id};
      keys_.append(key);
      ++size_;
      return;
    }
    if (s.hash == uint32_t(h) && key_of(s) == key) {
      s.id = id;
      return;
    }
  }
}

}  // namespace dsv3
