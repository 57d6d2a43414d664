// Whole-tensor conversions that run inside write_safetensors' fill callbacks. Each works on
// 128-row stripes (or 4 MB chunks) in parallel (OpenMP) with small per-thread buffers, so even
// the largest tensor ([129280, 7168] embedding) never needs a full float32 copy, and hands every
// finished stripe of input to `release` so touched input pages leave the resident set at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/dtype.h"

namespace dsv3 {

// Called with input byte ranges that are no longer needed (may be called from several threads).
using ReleaseFn = std::function<void(const void* p, size_t n)>;

// q [rows, cols] E4M3 with scale_inv [ceil(rows/128), ceil(cols/128)] -> dst [rows, cols] BF16:
// fp32 product of the decoded value and its block scale, rounded to nearest even (as the
// official weight_dequant kernel does). Table-driven: one 256-entry BF16 table per block.
void dequantize_fp8_to_bf16(const uint8_t* q, const float* scale_inv, int64_t rows, int64_t cols, uint16_t* dst,
                            const ReleaseFn& release);

// src [rows, cols] of float type `t` (BF16, F16, F32) -> dst [rows, cols] E4M3 and
// scale_inv [ceil(rows/128), ceil(cols/128)] F32, by 128x128 blocks (core/fp8_block.h).
void quantize_to_fp8(DType t, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst, float* scale_inv,
                     const ReleaseFn& release);

// src [rows, cols] of float type `t` (BF16, F16, F32, or F8_E4M3 with fp8_scale_inv
// [ceil(rows/128), ceil(cols/128)]) -> compressed-tensors pack-quantized int4: per group of
// `group` columns scale = bf16(amax / 7.5) into scales [rows, ceil(cols/group)] (BF16),
// q = clamp(round_half_even(x / scale), -8, 7), stored as q + 8 in bits 4(c%8) of the
// little-endian int32 c/8 of packed [rows, ceil(cols/8)] (a zero scale gives q = 0).
void quantize_to_int4(DType t, const uint8_t* src, const float* fp8_scale_inv, int64_t rows, int64_t cols,
                      int64_t group, uint32_t* packed, uint16_t* scales, const ReleaseFn& release);

// Parallel chunked copy of n bytes.
void copy_bytes(const uint8_t* src, size_t n, uint8_t* dst, const ReleaseFn& release);

}  // namespace dsv3
