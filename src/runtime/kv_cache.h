// Paged latent KV cache (MLA): per token per layer only kv_a_layernorm(c_kv) [kv_lora] and
// rope(k_pe) [rope] are kept - 576 floats for V3 - shared by all heads. Memory is a pool of
// blocks of 64 positions; each sequence owns a block table, so batching, prefix sharing
// (reference-counted blocks) and speculative rollback all use the same cache.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dsv3 {

class KVCache {
 public:
  static constexpr int64_t kBlockSize = 64;
  // layers: main + MTP layers; dim: kv_lora + rope; dtype F32 or BF16 (--kv-dtype: half the
  // memory, latents rounded to nearest-even BF16 when written). Pages are touched only when written.
  KVCache(int64_t layers, int64_t dim, int64_t n_blocks, DType dtype = DType::F32);

  int64_t layers() const { return layers_; }
  int64_t dim() const { return dim_; }
  DType dtype() const { return dtype_; }
  int64_t num_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  size_t elem_bytes() const { return elem_; }
  size_t bytes() const { return static_cast<size_t>(layers_ * n_blocks_ * kBlockSize * dim_) * elem_; }

  // [dim] values (in dtype()) of one position of one block in one layer; the positions of a
  // block follow each other.
  uint8_t* row(int64_t layer, int32_t block, int64_t offset) {
    return data_.get() + static_cast<size_t>(((layer * n_blocks_ + block) * kBlockSize + offset) * dim_) * elem_;
  }
  const uint8_t* row(int64_t layer, int32_t block, int64_t offset) const {
    return data_.get() + static_cast<size_t>(((layer * n_blocks_ + block) * kBlockSize + offset) * dim_) * elem_;
  }
  // `rows` positions from `offset` on, from / to float32 ([rows, dim]).
  void write(int64_t layer, int32_t block, int64_t offset, const float* src, int64_t rows);
  void read(int64_t layer, int32_t block, int64_t offset, float* dst, int64_t rows) const;

  // Takes a free block (refcount 1); throws dsv3::Error when the cache is full.
  int32_t allocate();
  void retain(int32_t b) { ++ref_[static_cast<size_t>(b)]; }
  void release(int32_t b);
  int32_t refcount(int32_t b) const { return ref_[static_cast<size_t>(b)]; }
  // Copies block `src` into a fresh block (all layers) and returns it: copy-on-write for a
  // shared block that a sequence is about to write into.
  int32_t copy_block(int32_t src);

 private:
  int64_t layers_, dim_, n_blocks_;
  DType dtype_;
  size_t elem_;
  std::unique_ptr<uint8_t[]> data_;  // [layers, n_blocks, 64, dim] in dtype_
  std::vector<int32_t> ref_;
  std::vector<int32_t> free_;
};

// "f32" or "bf16" (--kv-dtype) -> the cache dtype; throws naming the value otherwise.
DType parse_kv_dtype(const std::string& s);

// One sequence's cache state: block i holds positions [64 i, 64 (i+1)).
struct SeqCache {
  std::vector<int32_t> blocks;
  int64_t len = 0;  // positions written and valid
};

// Makes positions [0, n) addressable and the blocks covering [from, n) private to `s`.
void reserve_positions(KVCache& kv, SeqCache& s, int64_t from, int64_t n);
// Forgets positions >= len (speculative rollback, /clear); frees blocks no longer used.
void truncate_seq(KVCache& kv, SeqCache& s, int64_t len);
void free_seq(KVCache& kv, SeqCache& s);

}  // namespace dsv3
