// The fast kernels, written once against a small vector interface `I` (see kernels_avx2.cc and
// kernels_avx512.cc, which include this file after defining their interface) and compiled once
// per instruction set. Everything here sits in an unnamed namespace: each SIMD translation unit
// gets its own private copy, so no ISA-specific code can leak into another unit via the linker.
//
// I provides: V (float vector), W (lanes), kGemvTokens, kGemvRowsOneToken, kTTokens, kTileRows, kTileVecs,
// kBf16Gemm (whether the BF16 prefill GEMM of kernels_avx512bf16.cc may serve it), zero,
// set1, loadu, storeu, fma(a,b,c)=a*b+c, add, sub, mul, div, max, hsum, hmax, exp, load_bf16,
// load_f16, load_e4m3_x2m8 (exact value times 2^-8) and load_e4m3_x2m120 (times 2^-120; both
// leave NaN codes finite), load_i4 (W/2 bytes of packed int4, low nibble first, as nibble - 8), and the NaN-code scan: B, kScanBytes, scan_zero, scan(m, bytes),
// scan_found(m). The BF16 GEMM's level also provides Vi, loadu_i, set1_i, dpbf16 (vdpbf16ps) and
// to_bf16_pairs (floats [2 n] to n BF16 pairs, rounded like bf16_pair). The VNNI level
// (kernels_avx512vnni.cc) adds kI4Vnni and, for gemv_block_i4_vnni, Vi, zero_i, nibbles,
// dpbusd (vpdpbusd), loadu_i, shl7, add_i, sub_i and to_float.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/fp8_block.h"
#include "core/tensor.h"
#include "ops/kernels.h"

namespace dsv3::ops::detail {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// This header is compiled once per ISA (-mavx2, -mavx512*). A std::vector<float> instantiated
// here has out-of-line members (_M_default_append ...) that are weak symbols shared with the
// whole program, and the linker may keep this file's AVX copy for baseline callers (it did in the
// sanitizer build). An allocator type of internal linkage makes the instantiations this file's
// own. tests/isa_symbols.sh checks that no weak symbol of an ISA object holds AVX code.
template <class T>
struct LocalAllocator : std::allocator<T> {
  LocalAllocator() = default;
  template <class U>
  LocalAllocator(const LocalAllocator<U>&) noexcept {}
};
template <class T>
using LocalVector = std::vector<T, LocalAllocator<T>>;

// One weight element as float32, without the FP8 block scale.
template <DType DT>
inline float elem(const void* row, int64_t j) {
  if constexpr (DT == DType::F32) return static_cast<const float*>(row)[j];
  if constexpr (DT == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(row)[j]);
  if constexpr (DT == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(row)[j]);
  if constexpr (DT == DType::F8_E4M3) return kE4M3ToF32[static_cast<const uint8_t*>(row)[j]];
  if constexpr (DT == DType::I4) return static_cast<float>(((static_cast<const uint8_t*>(row)[j >> 1] >> ((j & 1) * 4)) & 15) - 8);
}

// load_w returns FP8 values times 2^-8 (see load_e4m3_x2m8); the 2^8 is folded into the block
// scale, which keeps every product exact in scale and away from the subnormal range.
constexpr float kFp8VecUnit = 256.0f;

// W lanes of weight elements [j, j+W) as float32 (FP8: times 2^-8), without the block scale.
template <class I, DType DT>
inline typename I::V load_w(const void* row, int64_t j) {
  if constexpr (DT == DType::F32) return I::loadu(static_cast<const float*>(row) + j);
  if constexpr (DT == DType::BF16) return I::load_bf16(static_cast<const uint16_t*>(row) + j);
  if constexpr (DT == DType::F16) return I::load_f16(static_cast<const uint16_t*>(row) + j);
  if constexpr (DT == DType::F8_E4M3) return I::load_e4m3_x2m8(static_cast<const uint8_t*>(row) + j);
  if constexpr (DT == DType::I4) return I::load_i4(static_cast<const uint8_t*>(row) + (j >> 1));  // j even
}

// Any E4M3 NaN code (low 7 bits all set) among n bytes. The fast conversion maps NaN codes to
// numbers, so kernels check for them to keep NaN weights producing NaN, as the reference does.
template <class I>
inline bool has_e4m3_nan(const uint8_t* p, int64_t n) {
  typename I::B m = I::scan_zero();
  int64_t i = 0;
  for (; i + I::kScanBytes <= n; i += I::kScanBytes) m = I::scan(m, p + i);
  bool nan = I::scan_found(m);
  for (; i < n; ++i) nan |= (p[i] & 0x7f) == 0x7f;
  return nan;
}

// Bytes before column c of a row (c even for I4).
template <DType DT>
constexpr int64_t col_bytes(int64_t c) {
  return DT == DType::I4 ? c / 2 : c * (DT == DType::F32 ? 4 : DT == DType::F8_E4M3 ? 1 : 2);
}

template <DType DT>
inline const void* row_ptr(const WeightView& w, int64_t r) {
  const int64_t stride = DT == DType::I4 ? w.packed_row_bytes() : col_bytes<DT>(w.cols);
  return static_cast<const char*>(w.data) + static_cast<size_t>((w.row0 + r) * stride);
}

// Block scale of view row r, column c (FP8 only).
inline float scale_at(const WeightView& w, int64_t r, int64_t c) {
  return w.scale_inv[((w.row0 + r) / kFp8Block) * w.scale_cols() + c / kFp8Block];
}

// out[0, len) = W[r, c0 + j] dequantised exactly as ref::weight_at does (element * scale in
// fp32). For FP8, [c0, c0+len) must lie inside one 128-column block.
template <class I, DType DT>
void dequant_row(const WeightView& w, int64_t r, int64_t c0, int64_t len, float* out) {
  using V = typename I::V;
  const void* row = row_ptr<DT>(w, r);
  int64_t j = 0;
  if constexpr (DT == DType::F8_E4M3) {
    const float s = scale_at(w, r, c0);
    const uint8_t* b = static_cast<const uint8_t*>(row);
    if (std::fabs(s) < 256.0f) {  // (e4m3 * 2^-120) * (s * 2^120) rounds like e4m3 * s; cheaper
      const V sv = I::set1(s * 0x1p120f);
      for (; j + I::W <= len; j += I::W) I::storeu(out + j, I::mul(I::load_e4m3_x2m120(b + c0 + j), sv));
    } else {  // s * 2^120 would overflow: the f16 route, (e4m3 * 2^-8) * (s * 2^8)
      const V sv = I::set1(s * kFp8VecUnit);
      for (; j + I::W <= len; j += I::W) I::storeu(out + j, I::mul(load_w<I, DT>(row, c0 + j), sv));
    }
    for (; j < len; ++j) out[j] = elem<DT>(row, c0 + j) * s;
    const uint8_t* bytes = static_cast<const uint8_t*>(row) + c0;
    if (w.nan_state != 1 && has_e4m3_nan<I>(bytes, len))  // rare: the bit trick maps NaN codes to numbers
      for (j = 0; j < len; ++j) out[j] = kE4M3ToF32[bytes[j]] * s;
  } else if constexpr (DT == DType::I4) {
    // [c0, c0+len) may span several groups; each segment is scaled by its group's scale.
    while (j < len) {
      const int64_t c = c0 + j, gend = min64((c / w.group + 1) * w.group, c0 + len) - c0;
      const float s = w.group_scale_at(r, c);
      const V sv = I::set1(s);
      if ((c & 1) == 0)
        for (; j + I::W <= gend; j += I::W) I::storeu(out + j, I::mul(load_w<I, DT>(row, c0 + j), sv));
      for (; j < gend; ++j) out[j] = elem<DT>(row, c0 + j) * s;
    }
  } else {
    for (; j + I::W <= len; j += I::W) I::storeu(out + j, load_w<I, DT>(row, c0 + j));
    for (; j < len; ++j) out[j] = elem<DT>(row, c0 + j);
  }
}

// ---- decode: GEMV over NR weight rows x NT tokens, each weight row streamed once ----
// FP8 here converts with load_e4m3_x2m120 (integer ops only, ~40% faster than the f16 route):
// it yields e4m3 * 2^-120, for subnormal codes an f32 subnormal, both exact. So that no
// product w * x lands in the subnormal range, the GEMV multiplies a copy of x by 2^k (chosen
// from max|x|, see prepare_gemv): w * x * 2^(k-120) then rounds exactly like w * x, and the block
// scale is multiplied by 2^(120-k) to undo it. Results equal the f16 route bit for bit.
// How far ahead of the rows being computed the GEMV prefetches into L2.
constexpr int64_t kGemvFarBytes = 128 << 10;

// Where the far prefetch goes on once it passes the end of the weight being read: the bytes
// [p, end) of the next weight in this thread's share of a gemv_batch (null: none). A decode
// step reads many small weights one after another (an expert's matrix is 1-2 MB in the bench
// model), and without this the first kGemvFarBytes of each came in by demand misses
// (bench_ops' decode step from memory, 2 threads: int4 experts 27.6 -> 37-40 GB/s, FP8 45 ->
// 47-49; --int4-all decode of the bench model +10%).
struct FarNext {
  const char* p = nullptr;
  const char* end = nullptr;
};
static thread_local FarNext t_far_next;

// Prefetch into L2 the byte kGemvFarBytes past p (a byte of a weight that ends at end), or the
// byte as far into the next weight.
inline void far_prefetch(const char* p, const char* end) {
  if (p + kGemvFarBytes < end) {
    __builtin_prefetch(p + kGemvFarBytes, 0, 1);
  } else if (const FarNext& n = t_far_next; n.p) {
    const ptrdiff_t over = p + kGemvFarBytes - end;
    if (over < n.end - n.p) __builtin_prefetch(n.p + over, 0, 1);
  }
}

struct GemvJob {
  MatmulJob m;           // x already scaled by 2^k for FP8
  float vec_unit = 1;    // FP8: 2^(120-k), for sums of x2m120 products
  float tail_unit = 1;   // FP8: 2^-k, for the scalar tail's exact products
  // I4 fast path (see gemv_block_i4): x with each 2W-column chunk split into its even and odd
  // columns [n, K], and per group the sum of x over the chunked columns [n, group_cols].
  const float* xq = nullptr;
  const float* gsum = nullptr;
  // I4 integer path (see gemv_block_i4_vnni): per token and 128-column chunk, x in three int8
  // parts, even then odd columns, and 16 lane corrections [n, K/128, kVnniChunkBytes], and the
  // chunk's unit [n, K/128].
  const int8_t* xv = nullptr;
  const float* xvs = nullptr;
};

// Whether interface I has AVX512_VNNI integer dot products (kernels_avx512vnni.cc).
template <class I>
constexpr bool kI4Vnni = requires { I::kI4Vnni; };
constexpr int64_t kVnniChunk = 128;                  // columns per chunk: 64 packed bytes
// Per chunk and token: three int8 parts of 128 bytes, then 16 int32 lane corrections (see
// gemv_block_i4_vnni).
constexpr int64_t kVnniChunkBytes = 3 * kVnniChunk + 64;

template <class I, DType DT>
inline typename I::V load_gemv_w(const void* row, int64_t j) {
  if constexpr (DT == DType::F8_E4M3) return I::load_e4m3_x2m120(static_cast<const uint8_t*>(row) + j);
  else return load_w<I, DT>(row, j);
}

// Tokens [t0, t0+NT) x rows r..r+NR-1 of job j.
// FP8: per 128-column block the partial dot is accumulated unscaled and multiplied by the block
// scale once.
// Memory: a thread streaming alone keeps too few reads in flight to reach the machine's
// bandwidth while it also computes, so each block prefetches twice: the same block of the next
// NR rows into L1 (where the NaN scan in gemv_rows, if the owner has not checked the weight,
// then finds them), and the bytes
// kGemvFarBytes further on into L2, enough ahead to cover DRAM latency under load (measured on
// the 5.7 GB MoE bench model, 2 threads: +15% decode over the L1 prefetch alone; 16 KB and
// 512 KB helped less). Past the end of the matrix it goes on into the next weight this thread
// reads (t_far_next), never into bytes of tensors the step does not read (other experts).
// A GEMV's per row and token running sums: vector lanes and scalar tails, zeroed.
template <class I, int NR, int NT>
struct GemvTotals {
  typename I::V v[NR][NT];
  float tail[NR][NT];
  GemvTotals() {
    for (int i = 0; i < NR; ++i)
      for (int t = 0; t < NT; ++t) v[i][t] = I::zero(), tail[i][t] = 0;
  }
};

// out[i] = I::hsum(v[i]) for N vectors, 8 at a time where I has hsum8 (the same sums).
template <class I, int N>
inline void hsums(const typename I::V* v, float* out) {
  int i = 0;
  if constexpr (requires { I::hsum8(v, out); })
    for (; i + 8 <= N; i += 8) I::hsum8(v + i, out + i);
  for (; i < N; ++i) out[i] = I::hsum(v[i]);
}

// y[t0 + t, r + i] (+)= the lanes of tot[i][t] plus ttot[i][t]; NaN for rows nan_row flags
// (nullptr: none).
template <class I, int NR, int NT>
inline void gemv_store(const GemvJob& j, int64_t t0, int64_t r, const typename I::V (&tot)[NR][NT],
                       const float (&ttot)[NR][NT], const bool* nan_row) {
  float sum[NR][NT];
  hsums<I, NR * NT>(&tot[0][0], &sum[0][0]);
  for (int i = 0; i < NR; ++i)
    for (int t = 0; t < NT; ++t) {
      float v = sum[i][t] + ttot[i][t];
      if (nan_row && nan_row[i]) v = std::numeric_limits<float>::quiet_NaN();
      float& out = j.m.y[(t0 + t) * j.m.ldy + r + i];
      out = j.m.accumulate ? out + v : v;
    }
}

template <class I, DType DT, int NR, int NT>
void gemv_block(const GemvJob& j, int64_t t0, int64_t r, const bool* nan_row) {
  using V = typename I::V;
  constexpr int W = I::W;
  constexpr bool kFp8 = DT == DType::F8_E4M3, kI4 = DT == DType::I4;
  const WeightView& w = j.m.w;
  const int64_t K = w.cols, ldx = j.m.ldx;
  const float* x = j.m.x + t0 * ldx;
  // Columns per scale: FP8 128x128 blocks, I4 groups; for other dtypes just the prefetch step.
  const int64_t blk = kI4 ? w.group : kFp8Block;
  const char* end = static_cast<const char*>(row_ptr<DT>(w, w.rows));  // this view's last row + 1
  const int64_t ahead = NR * (static_cast<const char*>(row_ptr<DT>(w, 1)) - static_cast<const char*>(row_ptr<DT>(w, 0)));
  const void* row[NR];
  for (int i = 0; i < NR; ++i) row[i] = row_ptr<DT>(w, r + i);
  GemvTotals<I, NR, NT> totals;
  auto &tot = totals.v, &ttot = totals.tail;
  for (int64_t k0 = 0; k0 < K; k0 += blk) {
    const int64_t kend = min64(k0 + blk, K);
    // Each 64-byte line once: the lines that start inside this block's bytes.
    for (int i = 0; i < NR; ++i) {
      const char* rb = static_cast<const char*>(row[i]);
      const uintptr_t a0 = reinterpret_cast<uintptr_t>(rb + col_bytes<DT>(k0));
      for (const char* p = rb + col_bytes<DT>(k0) + ((64 - a0 % 64) % 64); p < rb + col_bytes<DT>(kend); p += 64) {
        __builtin_prefetch(p + ahead);  // into L1, for the next row group
        far_prefetch(p, end);  // into L2
      }
    }
    V acc[NR][NT];
    float tail[NR][NT];
    for (int i = 0; i < NR; ++i)
      for (int t = 0; t < NT; ++t) acc[i][t] = I::zero(), tail[i][t] = 0;
    int64_t c = k0;
    for (; c + W <= kend; c += W) {
      V xv[NT];
      for (int t = 0; t < NT; ++t) {
        xv[t] = I::loadu(x + t * ldx + c);
        // Keep x in a register: folded into each FMA, it would be loaded once per row, and
        // with several tokens the loads, not the FMAs, would set the pace (Zen 4 loads one
        // 512-bit vector per cycle).
        if constexpr (NR > 1) asm("" : "+v"(xv[t]));
      }
      for (int i = 0; i < NR; ++i) {
        const V wv = load_gemv_w<I, DT>(row[i], c);
        for (int t = 0; t < NT; ++t) acc[i][t] = I::fma(wv, xv[t], acc[i][t]);
      }
    }
    for (; c < kend; ++c)
      for (int i = 0; i < NR; ++i) {
        const float wv = elem<DT>(row[i], c);
        for (int t = 0; t < NT; ++t) tail[i][t] = std::fma(wv, x[t * ldx + c], tail[i][t]);
      }
    for (int i = 0; i < NR; ++i) {
      if constexpr (kFp8) {
        const float s = scale_at(w, r + i, k0);
        const V sv = I::set1(s * j.vec_unit);
        // (tail * s) * 2^-k: s * 2^-k alone could be subnormal.
        for (int t = 0; t < NT; ++t) tot[i][t] = I::fma(acc[i][t], sv, tot[i][t]), ttot[i][t] = std::fma(tail[i][t] * s, j.tail_unit, ttot[i][t]);
      } else if constexpr (kI4) {
        const float s = w.group_scale_at(r + i, k0);
        const V sv = I::set1(s);
        for (int t = 0; t < NT; ++t) tot[i][t] = I::fma(acc[i][t], sv, tot[i][t]), ttot[i][t] = std::fma(tail[i][t], s, ttot[i][t]);
      } else {
        for (int t = 0; t < NT; ++t) tot[i][t] = I::add(tot[i][t], acc[i][t]), ttot[i][t] += tail[i][t];
      }
    }
  }
  gemv_store<I, NR, NT>(j, t0, r, tot, ttot, kFp8 ? nan_row : nullptr);
}

// NR packed int4 rows from row r of w, as the int4 GEMVs walk them: row pointers, where each
// row's scales start in group_scale ([group_cols] each), and the end of the view's bytes.
template <int NR>
struct I4Rows {
  const uint8_t* row[NR];
  size_t srow[NR];
  const char* end;
  int64_t rb;  // bytes per packed row
  I4Rows(const WeightView& w, int64_t r) : end(static_cast<const char*>(row_ptr<DType::I4>(w, w.rows))), rb(w.packed_row_bytes()) {
    for (int i = 0; i < NR; ++i) {
      row[i] = static_cast<const uint8_t*>(row_ptr<DType::I4>(w, r + i));
      srow[i] = static_cast<size_t>((w.row0 + r + i) * w.group_cols());
    }
  }
  // Prefetches for columns [c0, c1): one per 64 bytes of each row (offsets from the row start;
  // rows need not be aligned), as gemv_block does: into L1 for the next NR rows, kGemvFarBytes
  // ahead into L2.
  void prefetch(int64_t c0, int64_t c1) const {
    for (int64_t b = (c0 / 2 + 63) & ~int64_t{63}; b < (c1 + 1) / 2; b += 64)
      for (int i = 0; i < NR; ++i) {
        const char* p = reinterpret_cast<const char*>(row[i]) + b;
        __builtin_prefetch(p + NR * rb);
        far_prefetch(p, end);
      }
  }
};

// I4 decode: 16 bytes (AVX-512; 8 on AVX2) hold 2W columns; widening each byte to a 32-bit lane
// and masking / shifting gives the even columns' nibbles in one vector and the odd columns' in
// another, so x comes pre-split (GemvJob::xq) and each nibble n is used as n, not n - 8:
// sum (n - 8) x = sum n x - 8 sum x, with sum x per group precomputed (GemvJob::gsum). Per 2W
// weights: one widening load, and, shift, two int->float conversions, 2 FMAs per token (the
// generic path needed twice that). Groups must be multiples of 2W columns; columns past the
// last whole chunk (K % 2W) take the exact scalar tail.
template <class I, int NR, int NT>
void gemv_block_i4(const GemvJob& j, int64_t t0, int64_t r) {
  using V = typename I::V;
  constexpr int W = I::W, C2 = 2 * W;
  const WeightView& w = j.m.w;
  const int64_t K = w.cols, G = w.group, gc = w.group_cols(), Kv = K / C2 * C2, ldx = j.m.ldx;
  const float* x = j.m.x + t0 * ldx;
  const float* xq = j.xq + t0 * K;
  const float* gs = j.gsum + t0 * gc;
  const I4Rows<NR> rows(w, r);
  const auto& row = rows.row;
  GemvTotals<I, NR, NT> totals;
  auto &tot = totals.v, &ttot = totals.tail;
  for (int64_t g = 0; g < gc; ++g) {
    const int64_t c0 = g * G, c1 = min64(c0 + G, K), cv = min64(c1, Kv);
    rows.prefetch(c0, c1);
    V acc[NR][NT];
    float tail[NR][NT];
    for (int i = 0; i < NR; ++i)
      for (int t = 0; t < NT; ++t) acc[i][t] = I::zero(), tail[i][t] = 0;
    int64_t c = c0;
    for (; c + C2 <= cv; c += C2) {
      V xe[NT], xo[NT];
      for (int t = 0; t < NT; ++t) {
        xe[t] = I::loadu(xq + t * K + c);
        xo[t] = I::loadu(xq + t * K + c + W);
      }
      for (int i = 0; i < NR; ++i) {
        V lo, hi;
        I::load_i4_split(row[i] + c / 2, lo, hi);
        for (int t = 0; t < NT; ++t) acc[i][t] = I::fma(hi, xo[t], I::fma(lo, xe[t], acc[i][t]));
      }
    }
    for (; c < c1; ++c)
      for (int i = 0; i < NR; ++i) {
        const float wv = elem<DType::I4>(row[i], c);
        for (int t = 0; t < NT; ++t) tail[i][t] = std::fma(wv, x[t * ldx + c], tail[i][t]);
      }
    for (int i = 0; i < NR; ++i) {
      const float s = w.group_scale_value(rows.srow[i] + static_cast<size_t>(g));
      const V sv = I::set1(s);
      for (int t = 0; t < NT; ++t)
        tot[i][t] = I::fma(acc[i][t], sv, tot[i][t]), ttot[i][t] = std::fma(std::fma(-8.0f, gs[t * gc + g], tail[i][t]), s, ttot[i][t]);
    }
  }
  gemv_store<I, NR, NT>(j, t0, r, tot, ttot, nullptr);
}

// I4 decode with integer dot products (AVX512_VNNI): 64 packed bytes (128 columns) split into
// the even columns' nibbles and the odd columns' (u8, 0..15), each multiplied into x with
// vpdpbusd (4 u8 x s8 products per 32-bit lane). x is carried per token and 128-column chunk as
// a1 2^14 + a2 2^7 + a3 (three int8 parts, a1 in [-127, 127]) times the chunk's unit
// max|x| / (127 2^14): about 21 bits against the chunk's largest element, so this path rounds
// differently from the float kernels (x is off by at most 2^-22 max|x| of its chunk, besides
// float rounding). Lane L sums columns 8L..8L+7 of a chunk: per part 8 products, joined as
// (p1 2^7 + p2) 2^7 + p3, at most 8 * 15 * 127 * 2^14 < 2^28. The nibbles are n = q + 8:
// sum q x = sum n x - 8 sum x, the second term per lane precomputed with x (exact integers).
// Per 128 weights and token: 6 vpdpbusd, 5 integer ops, a conversion and an FMA, against 8
// widening conversions and 8 FMAs in gemv_block_i4 (1.4-2x on its own on Zen 5); the scalar
// per-group work of gemv_block_i4 is left to columns past the last whole chunk.
template <class I, int NR, int NT>
void gemv_block_i4_vnni(const GemvJob& j, int64_t t0, int64_t r) {
  using Vi = typename I::Vi;
  constexpr int64_t C = kVnniChunk;
  const WeightView& w = j.m.w;
  const int64_t K = w.cols, G = w.group, gc = w.group_cols(), nch = K / C, Kv = nch * C, ldx = j.m.ldx;
  const float* x = j.m.x + t0 * ldx;
  const int8_t* xv = j.xv + t0 * nch * kVnniChunkBytes;
  const float* xvs = j.xvs + t0 * nch;
  const I4Rows<NR> rows(w, r);
  const auto& row = rows.row;
  GemvTotals<I, NR, NT> totals;
  auto &tot = totals.v, &ttot = totals.tail;
  for (int64_t g = 0; g < gc; ++g) {
    const int64_t c0 = g * G, c1 = min64(c0 + G, K), cv = min64(c1, Kv);
    rows.prefetch(c0, c1);
    float s[NR];
    for (int i = 0; i < NR; ++i) s[i] = w.group_scale_value(rows.srow[i] + static_cast<size_t>(g));
    int64_t c = c0;
    for (; c + C <= cv; c += C) {
      const int64_t ch = c / C;
      for (int i = 0; i < NR; ++i) {
        Vi lo, hi;
        I::nibbles(row[i] + c / 2, lo, hi);
        for (int t = 0; t < NT; ++t) {
          const int8_t* xp = xv + (t * nch + ch) * kVnniChunkBytes;
          // Three independent sums, joined after: a chain of six dot products would wait on
          // each one's latency.
          const Vi a1 = I::dpbusd(I::dpbusd(I::zero_i(), lo, xp), hi, xp + 64);
          const Vi a2 = I::dpbusd(I::dpbusd(I::zero_i(), lo, xp + 128), hi, xp + 192);
          const Vi a3 = I::dpbusd(I::dpbusd(I::zero_i(), lo, xp + 256), hi, xp + 320);
          const Vi a = I::sub_i(I::add_i(I::shl7(I::add_i(I::shl7(a1), a2)), a3), I::loadu_i(xp + 384));
          tot[i][t] = I::fma(I::to_float(a), I::set1(s[i] * xvs[t * nch + ch]), tot[i][t]);
        }
      }
    }
    if (c < c1)
      for (int i = 0; i < NR; ++i)
        for (int t = 0; t < NT; ++t) {
          float tail = 0;
          for (int64_t k = c; k < c1; ++k) tail = std::fma(elem<DType::I4>(row[i], k), x[t * ldx + k], tail);
          ttot[i][t] = std::fma(tail, s[i], ttot[i][t]);
        }
  }
  gemv_store<I, NR, NT>(j, t0, r, tot, ttot, nullptr);
}

// One token group of NT tokens; more than 12 row-token pairs would run out of registers
// (NR*NT block + NR*NT total + NT x vectors), so such groups go one row at a time.
template <class I, DType DT, int NR, int NT>
void gemv_group(const GemvJob& j, int64_t t0, int64_t r, const bool* nan_row) {
  if constexpr (DT == DType::I4 && !(NR > 1 && NR * NT > 12)) {
    if constexpr (kI4Vnni<I>)
      if (j.xv) return gemv_block_i4_vnni<I, NR, NT>(j, t0, r);
    if (j.xq) return gemv_block_i4<I, NR, NT>(j, t0, r);
  }
  if constexpr (NR > 1 && NR * NT > 12) {
    for (int i = 0; i < NR; ++i) gemv_block<I, DT, 1, NT>(j, t0, r + i, nan_row + i);
  } else {
    gemv_block<I, DT, NR, NT>(j, t0, r, nan_row);
  }
}

// All tokens for rows r..r+NR-1, in token groups of up to I::kGemvTokens (<= 8); the rows
// stay in L1 between groups so the weights leave memory once.
template <class I, DType DT, int NR>
void gemv_rows(const GemvJob& j, int64_t r) {
  bool nan_row[NR] = {};
  if constexpr (DT == DType::F8_E4M3)
    for (int i = 0; i < NR && j.m.w.nan_state != 1; ++i)
      nan_row[i] = has_e4m3_nan<I>(static_cast<const uint8_t*>(row_ptr<DT>(j.m.w, r + i)), j.m.w.cols);
  constexpr int G = I::kGemvTokens;
  static_assert(G >= 1 && G <= 8);
  for (int64_t t = 0; t < j.m.n; t += G) {
    switch (min64(G, j.m.n - t)) {
#define DSV3_GEMV_CASE(k) \
  case k:                 \
    if constexpr (k <= G) gemv_group<I, DT, NR, k>(j, t, r, nan_row); \
    break;
      DSV3_GEMV_CASE(1) DSV3_GEMV_CASE(2) DSV3_GEMV_CASE(3) DSV3_GEMV_CASE(4)
      DSV3_GEMV_CASE(5) DSV3_GEMV_CASE(6) DSV3_GEMV_CASE(7) DSV3_GEMV_CASE(8)
#undef DSV3_GEMV_CASE
      default: break;
    }
  }
}

// Rows [r0, r1) of one job. One token: I::kGemvRowsOneToken rows at a time (AVX-512: 8, AVX2:
// 4), for the reads in flight: on Zen 5, 2 threads, 1-token FP8 decode of the 5.7 GB MoE bench
// model went 25 -> 31 tok/s from 2 rows to 8 (4 and 6 gave less, 12 spills); the AVX2 kernels on
// the same CPU 26 -> 36 tok/s from 2 rows to 4 (6 gave 33). Two tokens (MTP's
// verify step, two sequences): half as many rows (FP8 GEMV +40% over 2 rows in bench_ops). Three
// or more: three rows, where the FMAs set the pace and a third row shares each x load (8 streams
// on the dense bench model: +5-10%); then two, then one for what is left.
template <class I, DType DT>
void gemv_range(const GemvJob& j, int64_t r0, int64_t r1) {
  int64_t r = r0;
  constexpr int R1 = I::kGemvRowsOneToken;
  if (j.m.n == 1 && R1 > 3)
    for (; r + R1 <= r1; r += R1) gemv_rows<I, DT, R1>(j, r);
  if (j.m.n == 2 && R1 > 3)
    for (; r + R1 / 2 <= r1; r += R1 / 2) gemv_rows<I, DT, R1 / 2>(j, r);
  if (j.m.n >= 3)
    for (; r + 3 <= r1; r += 3) gemv_rows<I, DT, 3>(j, r);
  for (; r + 2 <= r1; r += 2) gemv_rows<I, DT, 2>(j, r);
  for (; r < r1; ++r) gemv_rows<I, DT, 1>(j, r);
}

template <class I>
void gemv_range(const GemvJob& j, int64_t r0, int64_t r1) {
  switch (j.m.w.dtype) {
    case DType::F32: return gemv_range<I, DType::F32>(j, r0, r1);
    case DType::BF16: return gemv_range<I, DType::BF16>(j, r0, r1);
    case DType::F16: return gemv_range<I, DType::F16>(j, r0, r1);
    case DType::F8_E4M3: return gemv_range<I, DType::F8_E4M3>(j, r0, r1);
    case DType::I4: return gemv_range<I, DType::I4>(j, r0, r1);
    default: return;  // rejected by the public entry point
  }
}

// Weight bytes per GEMV task: large enough that taking a task (an atomic) is noise, small
// enough that a batch splits into many more tasks than threads.
constexpr int64_t kGemvTaskBytes = 64 << 10;

// FP8 jobs get x scaled by 2^k into xs [n, K] (see GemvJob), with k such that max|x| 2^k is
// just below 2^110: the scalar tail's sums of e4m3 * x 2^k stay below FLT_MAX, while a
// vector product underflows only where |w x| < max|x| * 2^-116, far below fp32 resolution of
// the sum. (k stays in [-6, 126] so that 2^k and 2^(120-k) are floats.)
// Floats of prepare_gemv's scratch for job m.
// I4 jobs the integer path takes: whole 128-column chunks inside groups, and one or two tokens
// (with 4 and 8, reloading every token's x parts for each row made it 1.6-2x slower than the
// float path on Zen 5; with 2 about even).
template <class I>
bool i4_vnni_job(const MatmulJob& m) {
  return kI4Vnni<I> && m.w.dtype == DType::I4 && m.n <= 2 && m.w.group % kVnniChunk == 0 && m.w.cols >= kVnniChunk;
}

template <class I>
int64_t gemv_scratch(const MatmulJob& m) {
  if (m.w.dtype == DType::F8_E4M3) return m.n * m.w.cols;
  if (m.w.dtype != DType::I4) return 0;
  const int64_t nch = m.w.cols / kVnniChunk, gc = m.w.group_cols();
  // float xq [n, K] (the float path, also the fallback for non-finite x), int8 parts, units, gsum
  const int64_t vnni = i4_vnni_job<I>(m) ? m.n * (nch * kVnniChunkBytes / 4 + nch) : 0;
  return m.w.group % (2 * I::W) == 0 ? m.n * (m.w.cols + gc) + vnni : 0;
}

// x [K] of one token as gemv_block_i4_vnni's int8 parts, lane corrections and chunk units (x
// finite), chunk by chunk (quantize_vnni_chunk in kernels.h; its AVX-512 form where it runs).
template <class I>
void quantize_x_vnni(const float* x, int64_t K, int8_t* parts, float* units) {
  for (int64_t ch = 0; ch < K / kVnniChunk; ++ch) {
    if constexpr (kI4Vnni<I>) I::quantize_chunk(x + ch * kVnniChunk, parts + ch * kVnniChunkBytes, units + ch);
    else quantize_vnni_chunk(x + ch * kVnniChunk, parts + ch * kVnniChunkBytes, units + ch);
  }
}

template <class I>
GemvJob prepare_gemv(const MatmulJob& m, float* xs) {
  GemvJob j{m};
  if (m.w.dtype == DType::I4 && gemv_scratch<I>(m) > 0) {  // see gemv_block_i4(_vnni)
    constexpr int W = I::W;
    const int64_t K = m.w.cols, G = m.w.group, gc = m.w.group_cols(), nch = K / kVnniChunk;
    bool vnni = i4_vnni_job<I>(m);
    for (int64_t t = 0; t < m.n && vnni; ++t)
      for (int64_t c = 0; c < K && vnni; ++c) vnni = std::isfinite(m.x[t * m.ldx + c]);
    const int64_t Kv = K / (2 * W) * (2 * W);  // columns in gsum (float path)
    float* gsum = xs + m.n * K;
    int8_t* parts = reinterpret_cast<int8_t*>(gsum + m.n * gc);
    float* units = gsum + m.n * gc + m.n * nch * kVnniChunkBytes / 4;
    for (int64_t t = 0; t < m.n; ++t) {
      const float* xr = m.x + t * m.ldx;
      if (vnni) {
        quantize_x_vnni<I>(xr, K, parts + t * nch * kVnniChunkBytes, units + t * nch);
        continue;
      }
      float* q = xs + t * K;
      for (int64_t c = 0; c < Kv; c += 2 * W)
        for (int i = 0; i < W; ++i) q[c + i] = xr[c + 2 * i], q[c + W + i] = xr[c + 2 * i + 1];
      for (int64_t g = 0; g < gc; ++g) {
        float sum = 0;
        for (int64_t c = g * G; c < min64((g + 1) * G, Kv); ++c) sum += xr[c];
        gsum[t * gc + g] = sum;
      }
    }
    j.gsum = gsum;
    if (vnni) j.xv = parts, j.xvs = units;
    else j.xq = xs;
    return j;
  }
  if (m.w.dtype != DType::F8_E4M3) return j;
  using V = typename I::V;
  const int64_t K = m.w.cols;
  V vmax = I::zero();
  float amax = 0;
  for (int64_t t = 0; t < m.n; ++t) {
    const float* xr = m.x + t * m.ldx;
    int64_t c = 0;
    for (; c + I::W <= K; c += I::W) {
      const V v = I::loadu(xr + c);
      vmax = I::max(vmax, I::max(v, I::sub(I::zero(), v)));
    }
    for (; c < K; ++c) amax = std::fmax(amax, std::fabs(xr[c]));
  }
  amax = std::fmax(amax, I::hmax(vmax));
  int e = 0;
  std::frexp(amax, &e);  // amax < 2^e
  const int k = amax > 0 && std::isfinite(amax) ? std::clamp(110 - e, -6, 126) : 64;  // 2^k amax < 2^110
  const V f = I::set1(std::ldexp(1.0f, k));
  for (int64_t t = 0; t < m.n; ++t) {
    const float* xr = m.x + t * m.ldx;
    float* out = xs + t * K;
    int64_t c = 0;
    for (; c + I::W <= K; c += I::W) I::storeu(out + c, I::mul(I::loadu(xr + c), f));
    for (; c < K; ++c) out[c] = xr[c] * std::ldexp(1.0f, k);
  }
  j.m.x = xs;
  j.m.ldx = K;
  j.vec_unit = std::ldexp(1.0f, 120 - k);
  j.tail_unit = std::ldexp(1.0f, -k);
  return j;
}

template <class I>
void gemv_batch(std::span<const MatmulJob> jobs) {
  struct Task {
    int64_t job, r0, r1, bytes;
    int64_t next_job;               // the first task of the next job
    const char *begin, *view_end;   // this task's first weight byte; its weight's end
  };
  thread_local std::vector<Task> tasks;
  thread_local std::vector<GemvJob> prepared;
  thread_local LocalVector<float> xs;
  tasks.clear();
  prepared.clear();
  int64_t work = 0, xs_size = 0, total = 0;
  for (const MatmulJob& m : jobs)
    if (m.n > 0 && m.n <= kGemvMaxTokens) xs_size += gemv_scratch<I>(m);
  if (static_cast<int64_t>(xs.size()) < xs_size) xs.resize(static_cast<size_t>(xs_size));
  float* xp = xs.data();
  thread_local LocalVector<const MatmulJob*> source;  // prepared[k] was made from *source[k]
  source.clear();
  for (const MatmulJob& m : jobs) {
    if (m.n <= 0 || m.n > kGemvMaxTokens || m.w.rows <= 0) continue;
    // Jobs reading the same x (a decode step's experts all read the token's hidden state) share
    // one prepared copy: what prepare_gemv makes depends only on x and the weight's dtype, width
    // and group.
    size_t same = 0;
    while (same < source.size() && !(source[same]->x == m.x && source[same]->n == m.n && source[same]->ldx == m.ldx &&
                                     source[same]->w.dtype == m.w.dtype && source[same]->w.cols == m.w.cols &&
                                     source[same]->w.group == m.w.group))
      ++same;
    if (same < source.size()) {
      GemvJob j = prepared[same];
      j.m.w = m.w, j.m.y = m.y, j.m.ldy = m.ldy, j.m.accumulate = m.accumulate;
      prepared.push_back(j);
    } else {
      prepared.push_back(prepare_gemv<I>(m, xp));
      xp += gemv_scratch<I>(m);
    }
    source.push_back(&m);
    const int64_t row_bytes = max64(1, m.w.dtype == DType::I4 ? m.w.packed_row_bytes() : m.w.cols * static_cast<int64_t>(dtype_size(m.w.dtype)));
    const int64_t step = (max64(1, kGemvTaskBytes / row_bytes) + 7) / 8 * 8;  // whole row octets
    const int64_t ji = static_cast<int64_t>(prepared.size()) - 1;
    const char* base = static_cast<const char*>(m.w.data) + m.w.row0 * row_bytes;
    for (int64_t r = 0; r < m.w.rows; r += step) {
      const int64_t r1 = min64(r + step, m.w.rows);
      tasks.push_back({ji, r, r1, (r1 - r) * row_bytes, 0, base + r * row_bytes, base + m.w.rows * row_bytes});
      total += (r1 - r) * row_bytes;
    }
    for (size_t k = tasks.size(); k-- > 0 && tasks[k].job == ji;) tasks[k].next_job = static_cast<int64_t>(tasks.size());
    work += m.w.rows * m.w.cols * m.n;
  }
  const int64_t count = static_cast<int64_t>(tasks.size());
  const int nt = static_cast<int>(min64(threads_for(work), count));
  // Thread i owns the tasks whose middle byte lies in the i-th nt-th of all the bytes: equal
  // shares in one contiguous run each, so the far prefetch of a thread's rows (into its own
  // core's L2) serves that thread. A thread done with its share then helps with the others',
  // taking their next tasks from the same counters, so a core slowed by a neighbour on a shared
  // host does not hold up the step. Plain dynamic task-taking (one counter) handed neighbouring
  // tasks to different cores: contiguous shares are +20% decode on the 5.7 GB MoE bench model.
  struct alignas(64) Share {
    std::atomic<int64_t> next;
    int64_t end;
  };
  thread_local std::vector<Share> shares;
  if (static_cast<int>(shares.size()) < nt) shares = std::vector<Share>(static_cast<size_t>(nt));
  for (int64_t i = 0, at = 0, th = 0; th < nt; ++th) {
    const int64_t bound = total * (th + 1) / nt;  // this share ends where a task's middle passes it
    shares[th].next.store(i, std::memory_order_relaxed);
    for (; i < count && (th == nt - 1 || 2 * at + tasks[static_cast<size_t>(i)].bytes <= 2 * bound); ++i)
      at += tasks[static_cast<size_t>(i)].bytes;
    shares[th].end = i;
  }
  const Task* t = tasks.data();
  const GemvJob* pj = prepared.data();
  Share* sh = shares.data();
  parallel_for(nt, nt, [&](int64_t th) {
    for (int64_t k = 0; k < nt; ++k) {
      Share& s = sh[(th + k) % nt];
      for (;;) {
        // The owner takes a quarter of what is left of its share at a time, a helper one task:
        // perf put 2-3% of FP8 decode on a locked add per 64 KB task (stalled behind the
        // memory traffic in flight), while the last tasks still go one by one to whoever is free.
        const int64_t take = k == 0 ? max64(1, (s.end - s.next.load(std::memory_order_relaxed)) / 4) : 1;
        const int64_t i0 = s.next.fetch_add(take, std::memory_order_relaxed), i1 = min64(i0 + take, s.end);
        if (i0 >= s.end) break;
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t nx = t[i].next_job;  // in this share: read by this thread next
          t_far_next = nx < s.end ? FarNext{t[nx].begin, t[nx].view_end} : FarNext{};
          gemv_range<I>(pj[t[i].job], t[i].r0, t[i].r1);
        }
      }
    }
    t_far_next = FarNext{};
  });
}

template <class I>
bool has_nan_codes(const WeightView& w) {
  if (w.dtype != DType::F8_E4M3) return false;
  const int nt = threads_for(w.rows * w.cols);
  bool found = false;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(|| : found)
  for (int64_t r = 0; r < w.rows; ++r)
    found = found || has_e4m3_nan<I>(static_cast<const uint8_t*>(row_ptr<DType::F8_E4M3>(w, r)), w.cols);
  return found;
}

// ---- prefill: dequantise a [RT, 128] weight tile once, reuse it for every token ----
// Tokens are packed transposed, xp [token_block][K][TT], so the micro-kernel vectorises over
// tokens and broadcasts weights; acc [RT][TT] lives in registers for one 128-column chunk and
// in a per-thread buffer yacc [RT][tokens] between chunks.
template <class I, int RT, int TV>
void micro_kernel(const float* wt, const float* xp, int64_t L, float* yacc, int64_t ldacc, bool first) {
  using V = typename I::V;
  constexpr int W = I::W, TT = TV * I::W;
  V acc[RT][TV];
  for (int r = 0; r < RT; ++r)
    for (int v = 0; v < TV; ++v) acc[r][v] = first ? I::zero() : I::loadu(yacc + r * ldacc + v * W);
  for (int64_t k = 0; k < L; ++k) {
    V xv[TV];
    for (int v = 0; v < TV; ++v) xv[v] = I::loadu(xp + k * TT + v * W);
    for (int r = 0; r < RT; ++r) {
      const V b = I::set1(wt[r * kFp8Block + k]);
      for (int v = 0; v < TV; ++v) acc[r][v] = I::fma(b, xv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < RT; ++r)
    for (int v = 0; v < TV; ++v) I::storeu(yacc + r * ldacc + v * W, acc[r][v]);
}

// The BF16 prefill path (ops::set_prefill_bf16): tokens and weights as BF16 pairs, packed
// xp [token_block][K/2][TT] and wt [RT][64] (each uint32 = (value k, value k+1)), multiplied by
// vdpbf16ps: per pair acc += x[k+1] w[k+1], then += x[k] w[k], each product exact in fp32 and
// each sum rounded (inputs DAZ, outputs FTZ), which ref::matmul emulates bit for bit.
template <class I, int RT, int TV>
void micro_kernel_bf16(const uint32_t* wt, const uint32_t* xp, int64_t L2, float* yacc, int64_t ldacc, bool first) {
  using V = typename I::V;
  constexpr int W = I::W, TT = TV * I::W;
  V acc[RT][TV];
  for (int r = 0; r < RT; ++r)
    for (int v = 0; v < TV; ++v) acc[r][v] = first ? I::zero() : I::loadu(yacc + r * ldacc + v * W);
  for (int64_t k = 0; k < L2; ++k) {
    typename I::Vi xv[TV];
    for (int v = 0; v < TV; ++v) xv[v] = I::loadu_i(xp + k * TT + v * W);
    for (int r = 0; r < RT; ++r) {
      const typename I::Vi b = I::set1_i(wt[r * (kFp8Block / 2) + k]);
      for (int v = 0; v < TV; ++v) acc[r][v] = I::dpbf16(acc[r][v], xv[v], b);
    }
  }
  for (int r = 0; r < RT; ++r)
    for (int v = 0; v < TV; ++v) I::storeu(yacc + r * ldacc + v * W, acc[r][v]);
}

// Two values as one BF16 pair (lo = first), rounded to nearest even.
inline uint32_t bf16_pair(float lo, float hi) {
  return static_cast<uint32_t>(f32_to_bf16(lo)) | (static_cast<uint32_t>(f32_to_bf16(hi)) << 16);
}

// kBf16: the BF16 path above; otherwise fp32 FMAs over the dequantised tiles.
template <class I, DType DT, int TV, bool kBf16 = false>
void gemm(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy, bool accumulate) {
  using X = std::conditional_t<kBf16, uint32_t, float>;  // one packed element
  constexpr int64_t S = kBf16 ? 2 : 1;                      // k values per element
  constexpr int RT = I::kTileRows, TT = TV * I::W;
  const int64_t K = w.cols, R = w.rows, KS = (K + S - 1) / S;
  const int64_t nb = (n + TT - 1) / TT;
  const int nt = threads_for(R * K * n);
  X* xp = reinterpret_cast<X*>(scratch(0, static_cast<size_t>(nb * KS * TT)));  // [nb][K/S][TT]
  if constexpr (kBf16) {
    // Each token's row becomes BF16 pairs with the vector conversion, then goes to its column.
    parallel_for(nt, nb, [&](int64_t b) {
      for (int tt = 0; tt < TT; ++tt) {
        const int64_t t = b * TT + tt;
        X* dst = xp + (b * KS) * TT + tt;
        if (t >= n) {
          for (int64_t k = 0; k < KS; ++k) dst[k * TT] = 0u;
          continue;
        }
        const float* xr = x + t * ldx;
        uint32_t* pairs = reinterpret_cast<uint32_t*>(scratch(3, static_cast<size_t>(KS)));  // [K/2]
        I::to_bf16_pairs(xr, pairs, K / 2);
        if (K & 1) pairs[KS - 1] = bf16_pair(xr[K - 1], 0.0f);
        for (int64_t k = 0; k < KS; ++k) dst[k * TT] = pairs[k];
      }
    });
  } else {
    parallel_for(nt, nb, [&](int64_t b) {
      for (int64_t k0 = 0; k0 < K; k0 += 64) {
        const int64_t kend = min64(k0 + 64, K);
        for (int tt = 0; tt < TT; ++tt) {
          const int64_t t = b * TT + tt;
          X* dst = xp + (b * K) * TT + tt;
          const float* xr = x + t * ldx;
          for (int64_t k = k0; k < kend; ++k) dst[k * TT] = t < n ? xr[k] : 0.0f;
        }
      }
    });
  }
  // Token super-blocks keep the packed activations a tile sweeps (K x sb tokens) within a few MB
  // (L3): one tile reads all of them. The weights are dequantised once per super-block.
  const int64_t sb = max64(1, (int64_t{4} << 20) / (KS * TT * 4));
  const int64_t tiles = (R + RT - 1) / RT;
  for (int64_t b0 = 0; b0 < nb; b0 += sb) {
    const int64_t b1 = min64(nb, b0 + sb), t0 = b0 * TT, t1 = min64(n, b1 * TT), ldacc = (b1 - b0) * TT;
    parallel_for(nt, tiles, [&](int64_t tile) {
      float* wf = scratch(1, RT * kFp8Block);                     // [RT][128] dequantised
      float* yacc = scratch(2, static_cast<size_t>(RT * ldacc));  // [RT][tokens of the super-block]
      X* wt = reinterpret_cast<X*>(kBf16 ? scratch(3, RT * kFp8Block / 2) : wf);  // [RT][128/S]
      const int64_t r0 = tile * RT, rows = min64(RT, R - r0);
      for (int64_t c0 = 0; c0 < K; c0 += kFp8Block) {
        const int64_t L = min64(kFp8Block, K - c0), LS = (L + S - 1) / S;
        // The tile's next 128 columns (or the next tile's first) are fetched while these are
        // dequantised and used: the tile's rows are K apart, too many streams for the hardware
        // prefetcher (the first touch of each weight byte otherwise stalls here).
        {
          const bool last = c0 + kFp8Block >= K;
          const int64_t pr0 = last ? r0 + RT : r0, pc = last ? 0 : c0 + kFp8Block;
          for (int64_t r = pr0; r < min64(pr0 + RT, R); ++r) {
            const char* p = static_cast<const char*>(row_ptr<DT>(w, r)) + col_bytes<DT>(pc);
            for (int64_t b = 0; b < col_bytes<DT>(min64(kFp8Block, K - pc)); b += 64) __builtin_prefetch(p + b);
          }
        }
        for (int64_t r = 0; r < rows; ++r) dequant_row<I, DT>(w, r0 + r, c0, L, wf + r * kFp8Block);
        for (int64_t r = rows; r < RT; ++r)
          for (int64_t k = 0; k < L; ++k) wf[r * kFp8Block + k] = 0.0f;
        if constexpr (kBf16) {
          for (int64_t r = 0; r < RT; ++r) {
            float* wr = wf + r * kFp8Block;
            if (L & 1) wr[L] = 0.0f;  // the last pair's second value
            I::to_bf16_pairs(wr, wt + r * (kFp8Block / 2), LS);
          }
          for (int64_t b = b0; b < b1; ++b)
            micro_kernel_bf16<I, RT, TV>(wt, xp + (b * KS + c0 / 2) * TT, LS, yacc + (b - b0) * TT, ldacc, c0 == 0);
        } else {
          for (int64_t b = b0; b < b1; ++b)
            micro_kernel<I, RT, TV>(wt, xp + (b * KS + c0) * TT, L, yacc + (b - b0) * TT, ldacc, c0 == 0);
        }
      }
      // Token-major write-back: each token's `rows` outputs are contiguous in y.
      for (int64_t t = t0; t < t1; ++t) {
        float* out = y + t * ldy + r0;
        const float* acc = yacc + (t - t0);
        if (accumulate)
          for (int64_t r = 0; r < rows; ++r) out[r] += acc[r * ldacc];
        else
          for (int64_t r = 0; r < rows; ++r) out[r] = acc[r * ldacc];
      }
    });
  }
}

template <class I, DType DT>
void matmul_dt(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy, bool accumulate) {
  if (n <= kGemvMaxTokens) {
    const MatmulJob j{x, n, ldx, w, y, ldy, accumulate};
    gemv_batch<I>({&j, 1});
  } else if (I::kBf16Gemm && n >= kBf16MinTokens && prefill_bf16()) {
    gemm_bf16_avx512(x, n, ldx, w, y, ldy, accumulate);
  } else if (n <= I::W || I::kTileVecs == 1) {
    gemm<I, DT, 1>(x, n, ldx, w, y, ldy, accumulate);
  } else {
    gemm<I, DT, I::kTileVecs>(x, n, ldx, w, y, ldy, accumulate);
  }
}

template <class I>
void matmul(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy, bool accumulate) {
  if (n <= 0 || w.rows <= 0) return;
  switch (w.dtype) {
    case DType::F32: return matmul_dt<I, DType::F32>(x, n, ldx, w, y, ldy, accumulate);
    case DType::BF16: return matmul_dt<I, DType::BF16>(x, n, ldx, w, y, ldy, accumulate);
    case DType::F16: return matmul_dt<I, DType::F16>(x, n, ldx, w, y, ldy, accumulate);
    case DType::F8_E4M3: return matmul_dt<I, DType::F8_E4M3>(x, n, ldx, w, y, ldy, accumulate);
    case DType::I4: return matmul_dt<I, DType::I4>(x, n, ldx, w, y, ldy, accumulate);
    default: return;  // rejected by the public entry point
  }
}

// GEMM-sized jobs one after another (each is parallel inside), then every GEMV-sized job in
// one parallel region. Jobs are independent, so the order does not matter.
template <class I>
void matmul_batch(std::span<const MatmulJob> jobs) {
  // GEMM-sized jobs (a prefill's experts): with several, threads take whole jobs, largest first,
  // each run on its thread (the GEMM's own regions are nested, hence serial): one fork/join for
  // the lot instead of three per job, and no barrier waits inside small experts' GEMMs.
  thread_local LocalVector<const MatmulJob*> big;
  big.clear();
  int64_t work = 0;
  for (const MatmulJob& j : jobs)
    if (j.n > kGemvMaxTokens) big.push_back(&j), work += j.n * j.w.rows * j.w.cols;
  if (big.size() >= 2 && threads_for(work) > 1 && !omp_in_parallel()) {
    std::stable_sort(big.begin(), big.end(), [](const MatmulJob* a, const MatmulJob* b) {
      return a->n * a->w.rows * a->w.cols > b->n * b->w.rows * b->w.cols;
    });
    const MatmulJob* const* order = big.data();  // this thread's list; the workers have their own `big`
    parallel_for(threads_for(work), static_cast<int64_t>(big.size()), [&](int64_t i) {
      const MatmulJob& j = *order[i];
      matmul<I>(j.x, j.n, j.ldx, j.w, j.y, j.ldy, j.accumulate);
    }, true);
  } else {
    for (const MatmulJob* j : big) matmul<I>(j->x, j->n, j->ldx, j->w, j->y, j->ldy, j->accumulate);
  }
  gemv_batch<I>(jobs);  // skips the jobs above: it takes only n <= kGemvMaxTokens
}

template <class I>
void axpy(float a, const float* x, float* y, int64_t n) {
  const typename I::V av = I::set1(a);
  int64_t i = 0;
  for (; i + I::W <= n; i += I::W) I::storeu(y + i, I::fma(av, I::loadu(x + i), I::loadu(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

// y[n, C] = x[n, R] . W: threads own column chunks of kTVecs vectors (128 columns with
// AVX-512, 64 with AVX2, so never across an FP8 scale block); within one, rows are added in
// order.
constexpr int kTVecs = 8;

// Chunk [c0, c0 + kTVecs * W) for NT tokens with the accumulators in registers: each weight
// row is converted once and multiplied into every token. FP8 weights come as e4m3 * 2^-8 and
// the per-row multiplier x[t, r] * s * 2^8 carries the block scale; no NaN codes allowed (the
// conversion maps them to numbers), so FP8 weights take this path only when checked. I4 rounds
// differently from its dequantised rows: (x * s) * q instead of x * (q * s).
// A partial chunk's whole vectors take the same path VECS = 4, 2, 1 at a time (pieces start at
// multiples of their width, so each stays inside a scale block or group as a chunk does).
template <class I, DType DT, int NT, int VECS = kTVecs>
void matmul_t_regs(const float* x, int64_t ldx, const WeightView& w, int64_t c0, float* y, int64_t ldy) {
  using V = typename I::V;
  V acc[NT][VECS];
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < VECS; ++v) acc[t][v] = I::zero();
  // I4: a chunk inside one group takes its scale in the multiplier; otherwise (groups of 32 or
  // 64) each vector, which lies inside one group, is scaled as it is loaded.
  const bool chunk_scale = DT != DType::I4 || w.group % (VECS * I::W) == 0;
  // Each row gives this chunk only 64-512 bytes (I4: one cache line) before the walk moves a
  // whole row on, a stride the hardware prefetcher follows late (absorbed attention over an I4
  // kv_b: 6.9% -> 2.8% of --int4-all decode on the bench model, perf). So each walk fetches its
  // bytes kAhead rows ahead, and the first chunk's walk whole rows: run in order on one thread
  // (attention's per-head calls), the walks of the other chunks then find theirs in cache.
  constexpr int64_t kAhead = 16;
  const int64_t f0 = c0 == 0 ? 0 : col_bytes<DT>(c0), f1 = c0 == 0 ? col_bytes<DT>(w.cols) : col_bytes<DT>(c0 + VECS * I::W);
  for (int64_t r = 0; r < w.rows; ++r) {
    const void* row = row_ptr<DT>(w, r);
    if (r + kAhead < w.rows) {
      const char* ahead = static_cast<const char*>(row_ptr<DT>(w, r + kAhead));
      for (int64_t b = f0; b < f1; b += 64) __builtin_prefetch(ahead + b);
    }
    float m = 1.0f;
    if constexpr (DT == DType::F8_E4M3) m = scale_at(w, r, c0) * kFp8VecUnit;
    if constexpr (DT == DType::I4)
      if (chunk_scale) m = w.group_scale_at(r, c0);
    V b[NT];
    for (int t = 0; t < NT; ++t) b[t] = I::set1(x[t * ldx + r] * m);
    for (int v = 0; v < VECS; ++v) {
      V wv = load_w<I, DT>(row, c0 + v * I::W);
      if constexpr (DT == DType::I4)
        if (!chunk_scale) wv = I::mul(wv, I::set1(w.group_scale_at(r, c0 + v * I::W)));
      for (int t = 0; t < NT; ++t) acc[t][v] = I::fma(wv, b[t], acc[t][v]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < VECS; ++v) I::storeu(y + t * ldy + c0 + v * I::W, acc[t][v]);
}

// Columns [c0, c0 + VECS W) of y for all n tokens, G tokens per register pass.
template <class I, DType DT, int VECS>
void matmul_t_piece(const float* x, int64_t n, int64_t ldx, const WeightView& w, int64_t c0, float* y, int64_t ldy) {
  constexpr int G = I::kTTokens;  // tokens per register pass
  static_assert(G >= 1 && G <= 3);
  for (int64_t t = 0; t < n; t += G) {
    const float* xt = x + t * ldx;
    float* yt = y + t * ldy;
    switch (min64(G, n - t)) {
      case 1: matmul_t_regs<I, DT, 1, VECS>(xt, ldx, w, c0, yt, ldy); break;
      case 2: if constexpr (G >= 2) matmul_t_regs<I, DT, 2, VECS>(xt, ldx, w, c0, yt, ldy); break;
      case 3: if constexpr (G >= 3) matmul_t_regs<I, DT, 3, VECS>(xt, ldx, w, c0, yt, ldy); break;
      default: break;
    }
  }
}

template <class I, DType DT>
void matmul_t_dt(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy) {
  constexpr int64_t CW = kTVecs * I::W, W = I::W;
  // I4 in registers needs each vector inside one group (see matmul_t_regs).
  const bool regs_ok = (DT != DType::I4 || w.group % I::W == 0) && (DT != DType::F8_E4M3 || w.nan_state == 1);
  const int64_t chunks = (w.cols + CW - 1) / CW;
  const int nt = threads_for(w.rows * w.cols * n);
  parallel_for(nt, chunks, [&](int64_t ch) {
    int64_t c0 = ch * CW, L = min64(CW, w.cols - c0);
    if (regs_ok) {
      if (L == CW) {
        matmul_t_piece<I, DT, kTVecs>(x, n, ldx, w, c0, y, ldy);
        return;
      }
      // A partial chunk (the latent cache's last 64 of V3's 576 columns; all of a small
      // model's): its whole vectors in pieces of 4, 2, 1 (was all by the row-wise path below:
      // 8% of the demo model's decode at 500 positions).
      if (L >= 4 * W) {
        matmul_t_piece<I, DT, 4>(x, n, ldx, w, c0, y, ldy);
        c0 += 4 * W, L -= 4 * W;
      }
      if (L >= 2 * W) {
        matmul_t_piece<I, DT, 2>(x, n, ldx, w, c0, y, ldy);
        c0 += 2 * W, L -= 2 * W;
      }
      if (L >= W) {
        matmul_t_piece<I, DT, 1>(x, n, ldx, w, c0, y, ldy);
        c0 += W, L -= W;
      }
      if (L == 0) return;
    }
    // The rest of a partial chunk (fewer than W columns), or FP8 not known to be NaN-free:
    // dequantise each row (checked), then add.
    float* buf = scratch(1, static_cast<size_t>(CW));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < L; ++j) y[t * ldy + c0 + j] = 0.0f;
    for (int64_t r = 0; r < w.rows; ++r) {
      dequant_row<I, DT>(w, r, c0, L, buf);
      for (int64_t t = 0; t < n; ++t) axpy<I>(x[t * ldx + r], buf, y + t * ldy + c0, L);
    }
  });
}

template <class I>
void matmul_t(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy) {
  if (n <= 0 || w.cols <= 0) return;
  switch (w.dtype) {
    case DType::F32: return matmul_t_dt<I, DType::F32>(x, n, ldx, w, y, ldy);
    case DType::BF16: return matmul_t_dt<I, DType::BF16>(x, n, ldx, w, y, ldy);
    case DType::F16: return matmul_t_dt<I, DType::F16>(x, n, ldx, w, y, ldy);
    case DType::F8_E4M3: return matmul_t_dt<I, DType::F8_E4M3>(x, n, ldx, w, y, ldy);
    case DType::I4: return matmul_t_dt<I, DType::I4>(x, n, ldx, w, y, ldy);
    default: return;
  }
}

// ---- element-wise ----
template <class I>
float dot(const float* a, const float* b, int64_t n) {
  using V = typename I::V;
  V acc[4] = {I::zero(), I::zero(), I::zero(), I::zero()};
  int64_t i = 0;
  for (; i + 4 * I::W <= n; i += 4 * I::W)
    for (int u = 0; u < 4; ++u) acc[u] = I::fma(I::loadu(a + i + u * I::W), I::loadu(b + i + u * I::W), acc[u]);
  for (; i + I::W <= n; i += I::W) acc[0] = I::fma(I::loadu(a + i), I::loadu(b + i), acc[0]);
  float s = I::hsum(I::add(I::add(acc[0], acc[1]), I::add(acc[2], acc[3])));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

template <class I>
void add(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + I::W <= n; i += I::W) I::storeu(y + i, I::add(I::loadu(y + i), I::loadu(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

template <class I>
void scale(float* y, float s, int64_t n) {
  const typename I::V sv = I::set1(s);
  int64_t i = 0;
  for (; i + I::W <= n; i += I::W) I::storeu(y + i, I::mul(I::loadu(y + i), sv));
  for (; i < n; ++i) y[i] *= s;
}

template <class I, DType DT>
void rmsnorm_dt(const float* x, int64_t n, int64_t d, const void* wv, float eps, float* y) {
  const int nt = threads_for(n * d * 8);
  parallel_for(nt, n, [&](int64_t t) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    const float inv = 1.0f / std::sqrt(dot<I>(xr, xr, d) / static_cast<float>(d) + eps);
    const typename I::V iv = I::set1(inv);
    int64_t i = 0;
    for (; i + I::W <= d; i += I::W) I::storeu(yr + i, I::mul(load_w<I, DT>(wv, i), I::mul(I::loadu(xr + i), iv)));
    for (; i < d; ++i) yr[i] = elem<DT>(wv, i) * (xr[i] * inv);
  });
}

template <class I>
void rmsnorm(const float* x, int64_t n, int64_t d, const WeightView& w, float eps, float* y) {
  switch (w.dtype) {
    case DType::F32: return rmsnorm_dt<I, DType::F32>(x, n, d, w.data, eps, y);
    case DType::BF16: return rmsnorm_dt<I, DType::BF16>(x, n, d, w.data, eps, y);
    case DType::F16: return rmsnorm_dt<I, DType::F16>(x, n, d, w.data, eps, y);
    default: return;
  }
}

template <class I>
void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  using V = typename I::V;
  const V one = I::set1(1.0f), zero = I::zero();
  int64_t i = 0;
  for (; i + I::W <= n; i += I::W) {
    const V g = I::loadu(gate + i);
    I::storeu(out + i, I::mul(I::div(g, I::add(one, I::exp(I::sub(zero, g)))), I::loadu(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

template <class I>
void softmax(float* x, int64_t n) {
  using V = typename I::V;
  if (n <= 0) return;
  float mx = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  if (n >= I::W) {
    V m = I::loadu(x);
    for (i = I::W; i + I::W <= n; i += I::W) m = I::max(m, I::loadu(x + i));
    mx = I::hmax(m);
  }
  for (; i < n; ++i) mx = std::fmax(mx, x[i]);
  // An all -inf row has no finite maximum; subtracting 0 keeps exp(-inf) = 0 instead of NaN.
  if (mx == -std::numeric_limits<float>::infinity()) mx = 0;
  const V mv = I::set1(mx);
  V sv = I::zero();
  for (i = 0; i + I::W <= n; i += I::W) {
    const V e = I::exp(I::sub(I::loadu(x + i), mv));
    I::storeu(x + i, e);
    sv = I::add(sv, e);
  }
  float sum = I::hsum(sv);
  for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
  scale<I>(x, 1.0f / sum, n);
}

// ---- FP8 training GEMM (ops/lowp.h): C[M, N] (+)= A[M, K] . B[K, N], quantised operands ----
// A tile of R rows x NV vectors of C. Per 128-block of K the partials p run over k in order, as
// ref::gemm_fp8_cells does: each product of two E4M3 values is exact in fp32, so the fma here
// and the reference's multiply-add round alike; then c = fma(p, sa * sb, c), also in order.
// Tiles start at multiples of NV * W columns, which divide 128, so a vector never straddles two
// 128-column scale blocks.
template <class I, int R, int NV>
void gemm_fp8_tile(const Fp8Gemm& g, int64_t m0, int64_t n0) {
  using V = typename I::V;
  constexpr int W = I::W;
  const int64_t K = g.K, N = g.N, KB = (K + kFp8Block - 1) / kFp8Block;
  const int64_t NB = g.bn == 1 ? N : (N + kFp8Block - 1) / kFp8Block;
  for (int r = 0; r < R; ++r)
    if (!g.accumulate)
      for (int v = 0; v < NV; ++v) I::storeu(g.c + (m0 + r) * g.ldc + n0 + v * W, I::zero());
  for (int64_t kb = 0; kb < KB; ++kb) {
    V p[R][NV];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) p[r][v] = I::zero();
    const int64_t k1 = min64(K, (kb + 1) * kFp8Block);
    for (int64_t k = kb * kFp8Block; k < k1; ++k) {
      V b[NV];
      for (int v = 0; v < NV; ++v) b[v] = I::loadu(g.qb + k * N + n0 + v * W);
      for (int r = 0; r < R; ++r) {
        const V a = I::set1(g.qa[(m0 + r) * K + k]);
        for (int v = 0; v < NV; ++v) p[r][v] = I::fma(a, b[v], p[r][v]);
      }
    }
    const float* sb = g.sb + kb * NB;
    for (int r = 0; r < R; ++r) {
      const float sa = g.sa[(m0 + r) * KB + kb];
      for (int v = 0; v < NV; ++v) {
        const int64_t n = n0 + v * W;
        const V s = g.bn == 1 ? I::mul(I::set1(sa), I::loadu(sb + n)) : I::set1(sa * sb[n / kFp8Block]);
        float* c = g.c + (m0 + r) * g.ldc + n;
        I::storeu(c, I::fma(p[r][v], s, I::loadu(c)));
      }
    }
  }
}

template <class I, int NV>
void gemm_fp8_rows(const Fp8Gemm& g, int64_t m0, int64_t rows, int64_t n0) {
  switch (rows) {
    case 4: return gemm_fp8_tile<I, 4, NV>(g, m0, n0);
    case 3: return gemm_fp8_tile<I, 3, NV>(g, m0, n0);
    case 2: return gemm_fp8_tile<I, 2, NV>(g, m0, n0);
    default: return gemm_fp8_tile<I, 1, NV>(g, m0, n0);
  }
}

// Threads split the [4-row x panel] tiles of C; each output cell is computed by one thread in
// a fixed order, so results never depend on the thread count. Columns past the last whole
// vector go to the scalar reference cell by cell.
template <class I>
void gemm_fp8(const Fp8Gemm& g) {
  constexpr int64_t kRows = 4, kPanel = I::kTileVecs * I::W;
  const int64_t panels = g.N / kPanel, vec_end = g.N / I::W * I::W, mt = (g.M + kRows - 1) / kRows;
  const int nt = threads_for(g.M * g.N * g.K);
  parallel_for(nt, (panels + 1) * mt, [&](int64_t i) {
      const int64_t pi = i / mt, mi = i % mt;
      const int64_t m0 = mi * kRows, rows = min64(kRows, g.M - m0), n0 = pi * kPanel;
      if (pi < panels) {
        gemm_fp8_rows<I, I::kTileVecs>(g, m0, rows, n0);
        return;
      }
      for (int64_t n = n0; n + I::W <= vec_end; n += I::W) gemm_fp8_rows<I, 1>(g, m0, rows, n);
      if (vec_end < g.N) ref::gemm_fp8_cells(g, m0, m0 + rows, vec_end, g.N);
  });
}

template <class I>
void round_bf16(const float* src, float* dst, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(threads_for(n * 4))
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
}

// ---- FP8 tile quantisation (ops/lowp.h quantize_fp8) ----
// E4M3 rounding of y as a float, branch-free so the compiler vectorises the loop that calls it;
// equal to e4m3_to_f32(f32_to_e4m3(y)) for every y (test_lowp checks against all 256 codes):
// at and above 2^-6 the fp32 mantissa is rounded to 3 bits (nearest even, carries into the
// exponent), below it adding 2^14 makes fp32 round to the 2^-9 subnormal grid; saturates at 448
// and keeps NaN.
inline float e4m3_round(float y) {
  const uint32_t u = std::bit_cast<uint32_t>(y), a = u & 0x7fffffffu;
  const uint32_t rn = (a + 0x7ffffu + ((a >> 20) & 1u)) & 0xfff00000u;
  const uint32_t rs = std::bit_cast<uint32_t>((std::bit_cast<float>(a) + 16384.0f) - 16384.0f);
  uint32_t r = a < (121u << 23) ? rs : rn;
  r = r > 0x43e00000u ? 0x43e00000u : r;
  r = a > 0x7f800000u ? a : r;
  return std::bit_cast<float>(r | (u & 0x80000000u));
}

// Tiles of tr x tc (each 1 or 128): per band of tr rows the per-column amax is taken across the
// rows with vector max, then folded per 128 columns when tc = 128; threads split the bands.
template <class I>
void quantize_fp8(const float* src, int64_t M, int64_t K, int64_t ld, int64_t tr, int64_t tc, float* q, float* s) {
  using V = typename I::V;
  const int64_t MT = (M + tr - 1) / tr, KT = (K + tc - 1) / tc;
  const int nt = static_cast<int>(min64(threads_for(M * K * 8), MT));
#pragma omp parallel num_threads(nt)
  {
    float* colmax = scratch(0, static_cast<size_t>(K));
    float* sc = scratch(1, static_cast<size_t>(K));  // each column's scale
#pragma omp for schedule(static)
    for (int64_t ti = 0; ti < MT; ++ti) {
      const int64_t r0 = ti * tr, r1 = min64(M, r0 + tr);
      for (int64_t c = 0; c < K; ++c) colmax[c] = 0.0f;
      for (int64_t r = r0; r < r1; ++r) {
        const float* x = src + r * ld;
        int64_t c = 0;
        for (; c + I::W <= K; c += I::W) {
          const V v = I::loadu(x + c);
          I::storeu(colmax + c, I::max(I::loadu(colmax + c), I::max(v, I::sub(I::zero(), v))));
        }
        for (; c < K; ++c) colmax[c] = std::max(colmax[c], std::fabs(x[c]));
      }
      for (int64_t tj = 0; tj < KT; ++tj) {
        const int64_t c0 = tj * tc, c1 = min64(K, c0 + tc);
        float amax = 0.0f;
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, colmax[c]);
        const float scale = fp8_tile_scale(amax);
        s[ti * KT + tj] = scale;
        for (int64_t c = c0; c < c1; ++c) sc[c] = scale;
      }
      for (int64_t r = r0; r < r1; ++r) {
        const float* x = src + r * ld;
        float* out = q + r * K;
        for (int64_t c = 0; c < K; ++c) out[c] = e4m3_round(x[c] / sc[c]);
      }
    }
  }
}

template <class I>
const Kernels& kernels_for() {
  static const Kernels k{&matmul<I>, &matmul_batch<I>, &has_nan_codes<I>, &matmul_t<I>, &rmsnorm<I>, &silu_mul<I>, &softmax<I>,
                         &add<I>,    &scale<I>,    &dot<I>,     &axpy<I>,   &gemm_fp8<I>, &round_bf16<I>, &quantize_fp8<I>};
  return k;
}

}  // namespace
}  // namespace dsv3::ops::detail
