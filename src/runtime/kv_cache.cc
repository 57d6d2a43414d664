#include "runtime/kv_cache.h"

#include <cstring>

#include "core/error.h"

namespace dsv3 {

KVCache::KVCache(int64_t layers, int64_t dim, int64_t n_blocks, DType dtype)
    : layers_(layers), dim_(dim), n_blocks_(n_blocks), dtype_(dtype), elem_(dtype_size(dtype)),
      data_(new uint8_t[static_cast<size_t>(layers * n_blocks * kBlockSize * dim) * dtype_size(dtype)]),  // untouched until used
      ref_(static_cast<size_t>(n_blocks), 0) {
  if (dtype != DType::F32 && dtype != DType::BF16) fail("KV cache dtype must be f32 or bf16");
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
    std::memcpy(row(l, dst, 0), row(l, src, 0), static_cast<size_t>(kBlockSize * dim_) * elem_);
  return dst;
}

void KVCache::write(int64_t layer, int32_t block, int64_t offset, const float* src, int64_t rows) {
  const size_t n = static_cast<size_t>(rows * dim_);
  if (dtype_ == DType::F32) {
    std::memcpy(row(layer, block, offset), src, n * sizeof(float));
    return;
  }
  uint16_t* d = reinterpret_cast<uint16_t*>(row(layer, block, offset));
  for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
}

void KVCache::read(int64_t layer, int32_t block, int64_t offset, float* dst, int64_t rows) const {
  to_f32(dtype_, row(layer, block, offset), dst, static_cast<size_t>(rows * dim_));
}

DType parse_kv_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::F32;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  fail("--kv-dtype: '{}' is not f32 or bf16", s);
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
