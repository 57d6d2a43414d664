#include "runtime/kv_cache.h"

#include <cstring>

#include "core/error.h"

namespace dsv3 {

KVCache::KVCache(int64_t layers, int64_t dim, int64_t n_blocks)
    : layers_(layers), dim_(dim), n_blocks_(n_blocks),
      data_(new float[static_cast<size_t>(layers * n_blocks * kBlockSize * dim)]),  // untouched until used
      ref_(static_cast<size_t>(n_blocks), 0) {
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int32_t KVCache::allocate() {
  if (free_.empty()) fail("KV cache is full ({} blocks of {} positions); raise --ctx or lower --parallel", n_blocks_, kBlockSize);
  const int32_t b = free_.back();
  free_.pop_back();
  ref_[static_cast<size_t>(b)] = 1;
  return b;
}

void KVCache::release(int32_t b) {
  if (--ref_[static_cast<size_t>(b)] == 0) free_.push_back(b);
}

int32_t KVCache::copy_block(int32_t src) {
  const int32_t dst = allocate();
  for (int64_t l = 0; l < layers_; ++l)
    std::memcpy(slot(l, dst, 0), slot(l, src, 0), static_cast<size_t>(kBlockSize * dim_) * sizeof(float));
  return dst;
}

void reserve_positions(KVCache& kv, SeqCache& s, int64_t from, int64_t n) {
  const int64_t need = (n + KVCache::kBlockSize - 1) / KVCache::kBlockSize;
  while (static_cast<int64_t>(s.blocks.size()) < need) s.blocks.push_back(kv.allocate());
  for (int64_t b = from / KVCache::kBlockSize; b < need; ++b) {
    int32_t& blk = s.blocks[static_cast<size_t>(b)];
    if (kv.refcount(blk) > 1) {  // shared prefix block about to be written: copy on write
      const int32_t mine = kv.copy_block(blk);
      kv.release(blk);
      blk = mine;
    }
  }
}

void truncate_seq(KVCache& kv, SeqCache& s, int64_t len) {
  if (len < s.len) s.len = len;
  const size_t keep = static_cast<size_t>((len + KVCache::kBlockSize - 1) / KVCache::kBlockSize);
  while (s.blocks.size() > keep) {
    kv.release(s.blocks.back());
    s.blocks.pop_back();
  }
}

void free_seq(KVCache& kv, SeqCache& s) {
  truncate_seq(kv, s, 0);
  s.len = 0;
}

}  // namespace dsv3
