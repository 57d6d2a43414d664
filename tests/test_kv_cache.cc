// Paged latent KV cache: block allocation and reference counts, copy-on-write of shared blocks
// in reserve_positions, truncation (speculative rollback) freeing blocks, and a full cache
// throwing dsv3::Error instead of crashing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>
#include <set>

#include "core/dtype.h"
#include "core/error.h"
#include "runtime/kv_cache.h"

namespace dsv3 {
namespace {

constexpr int64_t B = KVCache::kBlockSize;

float* at(KVCache& kv, int64_t l, int32_t b, int64_t o) { return reinterpret_cast<float*>(kv.row(l, b, o)); }

// Writes a value identifying (layer, block, offset, j) into every slot of block `b`.
void fill_block(KVCache& kv, int32_t b, float tag) {
  for (int64_t l = 0; l < kv.layers(); ++l)
    for (int64_t o = 0; o < B; ++o)
      for (int64_t j = 0; j < kv.dim(); ++j) at(kv, l, b, o)[j] = tag + static_cast<float>(l * 100000 + o * 100 + j);
}

TEST(KVCache, AllocateReleaseRefcount) {
  KVCache kv(2, 3, 4);
  EXPECT_EQ(kv.num_blocks(), 4);
  EXPECT_EQ(kv.free_blocks(), 4);
  EXPECT_EQ(kv.bytes(), static_cast<size_t>(2 * 4 * B * 3) * sizeof(float));
  std::set<int32_t> got;
  for (int i = 0; i < 4; ++i) {
    const int32_t b = kv.allocate();
    EXPECT_GE(b, 0);
    EXPECT_LT(b, 4);
    EXPECT_EQ(kv.refcount(b), 1);
    got.insert(b);
  }
  EXPECT_EQ(got.size(), 4u) << "a block was handed out twice";
  EXPECT_EQ(kv.free_blocks(), 0);
  EXPECT_THROW(kv.allocate(), Error);

  const int32_t b = *got.begin();
  kv.retain(b);
  EXPECT_EQ(kv.refcount(b), 2);
  kv.release(b);
  EXPECT_EQ(kv.refcount(b), 1);
  EXPECT_EQ(kv.free_blocks(), 0) << "a block still referenced was freed";
  kv.release(b);
  EXPECT_EQ(kv.refcount(b), 0);
  EXPECT_EQ(kv.free_blocks(), 1);
  EXPECT_EQ(kv.allocate(), b);  // the only free block
}

TEST(KVCache, SlotsOfLayersAndBlocksDoNotOverlap) {
  KVCache kv(3, 5, 3);
  for (int32_t b = 0; b < 3; ++b) fill_block(kv, b, static_cast<float>(b) * 1e7f);
  for (int32_t b = 0; b < 3; ++b)
    for (int64_t l = 0; l < 3; ++l)
      for (int64_t o : {int64_t{0}, B - 1})
        for (int64_t j = 0; j < 5; ++j)
          ASSERT_EQ(at(kv, l, b, o)[j], static_cast<float>(b) * 1e7f + static_cast<float>(l * 100000 + o * 100 + j));
}

TEST(KVCache, CopyBlockCopiesAllLayers) {
  KVCache kv(2, 4, 3);
  const int32_t a = kv.allocate();
  fill_block(kv, a, 7.0f);
  const int32_t c = kv.copy_block(a);
  EXPECT_NE(c, a);
  EXPECT_EQ(kv.refcount(c), 1);
  EXPECT_EQ(kv.refcount(a), 1);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t o = 0; o < B; ++o)
      for (int64_t j = 0; j < 4; ++j) ASSERT_EQ(at(kv, l, c, o)[j], at(kv, l, a, o)[j]);
}

TEST(KVCache, ReservePositionsAllocatesCoveringBlocks) {
  KVCache kv(1, 2, 8);
  SeqCache s;
  reserve_positions(kv, s, 0, 1);
  EXPECT_EQ(s.blocks.size(), 1u);
  reserve_positions(kv, s, 1, B);
  EXPECT_EQ(s.blocks.size(), 1u);
  reserve_positions(kv, s, B, B + 1);
  EXPECT_EQ(s.blocks.size(), 2u);
  reserve_positions(kv, s, B + 1, 3 * B + 5);
  EXPECT_EQ(s.blocks.size(), 4u);
  EXPECT_EQ(kv.free_blocks(), 4);
  EXPECT_EQ(std::set<int32_t>(s.blocks.begin(), s.blocks.end()).size(), 4u);
}

TEST(KVCache, CopyOnWriteForSharedBlocks) {
  KVCache kv(2, 3, 8);
  SeqCache a;
  reserve_positions(kv, a, 0, 2 * B);
  a.len = 2 * B;
  fill_block(kv, a.blocks[0], 1.0f);
  fill_block(kv, a.blocks[1], 2.0f);
  // b shares a's two blocks (as a prefix-cache hit would).
  SeqCache b;
  for (int32_t blk : a.blocks) {
    kv.retain(blk);
    b.blocks.push_back(blk);
  }
  b.len = 2 * B;
  const int32_t shared0 = a.blocks[0], shared1 = a.blocks[1];
  // b is about to write positions [B+10, 2B+3): block 1 must become private, block 0 stays shared.
  reserve_positions(kv, b, B + 10, 2 * B + 3);
  ASSERT_EQ(b.blocks.size(), 3u);
  EXPECT_EQ(b.blocks[0], shared0);
  EXPECT_EQ(kv.refcount(shared0), 2);
  EXPECT_NE(b.blocks[1], shared1);
  EXPECT_EQ(kv.refcount(shared1), 1) << "the shared block must lose b's reference";
  EXPECT_EQ(kv.refcount(b.blocks[1]), 1);
  EXPECT_EQ(a.blocks[1], shared1);
  // The private copy holds the old contents (positions < B+10 stay valid for b).
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t o = 0; o < B; ++o)
      for (int64_t j = 0; j < 3; ++j) ASSERT_EQ(at(kv, l, b.blocks[1], o)[j], at(kv, l, shared1, o)[j]);
  // Writing b's copy leaves a untouched.
  at(kv, 1, b.blocks[1], 20)[0] = -5.0f;
  EXPECT_NE(at(kv, 1, shared1, 20)[0], -5.0f);
  // A private block is not copied again.
  const int32_t mine = b.blocks[1];
  reserve_positions(kv, b, B + 11, 2 * B + 4);
  EXPECT_EQ(b.blocks[1], mine);

  free_seq(kv, b);
  EXPECT_EQ(kv.refcount(shared0), 1);
  free_seq(kv, a);
  EXPECT_EQ(kv.free_blocks(), 8);
}

TEST(KVCache, TruncateFreesBlocks) {
  KVCache kv(1, 2, 8);
  SeqCache s;
  reserve_positions(kv, s, 0, 3 * B);
  s.len = 3 * B;
  EXPECT_EQ(kv.free_blocks(), 5);
  truncate_seq(kv, s, 2 * B + 1);  // still needs 3 blocks
  EXPECT_EQ(s.len, 2 * B + 1);
  EXPECT_EQ(s.blocks.size(), 3u);
  truncate_seq(kv, s, B + 1);
  EXPECT_EQ(s.len, B + 1);
  EXPECT_EQ(s.blocks.size(), 2u);
  EXPECT_EQ(kv.free_blocks(), 6);
  truncate_seq(kv, s, B);
  EXPECT_EQ(s.blocks.size(), 1u);
  // A truncation beyond len keeps len (nothing to forget).
  truncate_seq(kv, s, B + 30);
  EXPECT_EQ(s.len, B);
  free_seq(kv, s);
  EXPECT_EQ(s.len, 0);
  EXPECT_TRUE(s.blocks.empty());
  EXPECT_EQ(kv.free_blocks(), 8);
}

TEST(KVCache, TruncateOfSharedBlockKeepsItForTheOtherOwner) {
  KVCache kv(1, 2, 4);
  SeqCache a, b;
  reserve_positions(kv, a, 0, B);
  b.blocks = a.blocks;
  kv.retain(a.blocks[0]);
  truncate_seq(kv, b, 0);
  EXPECT_EQ(kv.refcount(a.blocks[0]), 1);
  EXPECT_EQ(kv.free_blocks(), 3);
}

TEST(KVCache, FullCacheThrows) {
  KVCache kv(1, 2, 2);
  SeqCache s;
  reserve_positions(kv, s, 0, 2 * B);
  EXPECT_THROW(reserve_positions(kv, s, 2 * B, 2 * B + 1), Error);
  SeqCache t;
  EXPECT_THROW(reserve_positions(kv, t, 0, 1), Error);
  // Copy-on-write also needs a free block.
  SeqCache u;
  u.blocks = s.blocks;
  for (int32_t b : u.blocks) kv.retain(b);
  EXPECT_THROW(reserve_positions(kv, u, 0, 1), Error);
  // The failures left the cache consistent: everything can still be freed.
  free_seq(kv, u);
  free_seq(kv, s);
  free_seq(kv, t);
  EXPECT_EQ(kv.free_blocks(), 2);
}


// --kv-dtype bf16: half the bytes; write() rounds each latent to nearest-even BF16 and read()
// returns exactly that value; copy-on-write copies BF16 blocks whole.
TEST(KVCache, Bf16StoresRoundedLatents) {
  KVCache f(2, 576, 4), h(2, 576, 4, DType::BF16);
  EXPECT_EQ(h.bytes() * 2, f.bytes());
  EXPECT_EQ(h.elem_bytes(), 2u);
  std::vector<float> src(3 * 576), back(3 * 576);
  for (size_t i = 0; i < src.size(); ++i) src[i] = std::sin(static_cast<float>(i) * 0.37f) * static_cast<float>(1 + i % 7) * 1e-3f;
  src[5] = 1.0f + 1.0f / 256.0f;          // a tie: rounds to even (1.0)
  src[6] = 1.0f + 3.0f / 256.0f;          // a tie: rounds to even (1 + 4/256)
  const int32_t b = h.allocate();
  h.write(1, b, 10, src.data(), 3);
  h.read(1, b, 10, back.data(), 3);
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(back[i], bf16_to_f32(f32_to_bf16(src[i]))) << i;
    ASSERT_LE(std::fabs(back[i] - src[i]), std::fabs(src[i]) / 256.0f) << i;
  }
  EXPECT_EQ(back[5], 1.0f);
  EXPECT_EQ(back[6], 1.0f + 4.0f / 256.0f);
  h.retain(b);
  const int32_t c = h.copy_block(b);
  std::vector<float> copy(back.size());
  h.read(1, c, 10, copy.data(), 3);
  EXPECT_EQ(copy, back);
  EXPECT_THROW(parse_kv_dtype("fp8"), Error);
  EXPECT_EQ(parse_kv_dtype("bf16"), DType::BF16);
}

}  // namespace
}  // namespace dsv3
