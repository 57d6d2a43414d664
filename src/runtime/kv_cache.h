// Paged latent KV cache (MLA): per token per layer only kv_a_layernorm(c_kv) [kv_lora] and
// rope(k_pe) [rope] are kept - 576 floats for V3 - shared by all heads. Memory is a pool of
// blocks of 64 positions; each sequence owns a block table, so batching, prefix sharing
// (reference-counted blocks) and speculative rollback all use the same cache.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace dsv3 {

class KVCache {
 public:
  static constexpr int64_t kBlockSize = 64;
  // layers: main + MTP layers; dim: kv_lora + rope. Pages are touched only when written.
  KVCache(int64_t layers, int64_t dim, int64_t n_blocks);

  int64_t layers() const { return layers_; }
  int64_t dim() const { return dim_; }
  int64_t num_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  size_t bytes() const { return static_cast<size_t>(layers_ * n_blocks_ * kBlockSize * dim_) * sizeof(float); }

  // [dim] values of one position of one block in one layer.
  float* slot(int64_t layer, int32_t block, int64_t offset) {
    return data_.get() + ((layer * n_blocks_ + block) * kBlockSize + offset) * dim_;
  }
  const float* slot(int64_t layer, int32_t block, int64_t offset) const {
    return data_.get() + ((layer * n_blocks_ + block) * kBlockSize + offset) * dim_;
  }

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
  std::unique_ptr<float[]> data_;  // [layers, n_blocks, 64, dim]
  std::vector<int32_t> ref_;
  std::vector<int32_t> free_;
};

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
