// FP8 block quantisation as in DeepSeek-V3 checkpoints: 128x128 blocks of E4M3 values with one
// float32 scale_inv each; value = e4m3 * scale_inv. Quantising: scale = amax/448 (amax floored
// at 1e-12), q = e4m3_saturating(x / scale), rounding to nearest even.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/dtype.h"

namespace dsv3 {

// The scale of a tile whose largest magnitude is amax: its values / scale fill E4M3's range.
inline float fp8_tile_scale(float amax) { return std::max(amax, 1e-12f) / kE4M3Max; }

// Quantises one stripe of r <= 128 rows of a [r, cols] float32 matrix (row stride ld):
// dst [r, cols] E4M3 (row stride cols), scale_inv [ceil(cols/128)] for this block row.
void quantize_fp8_stripe(const float* src, int64_t r, int64_t cols, int64_t ld, uint8_t* dst, float* scale_inv);

// Dequantises rows [r0, r0+r) of an FP8 block weight [rows, cols] into float32 dst [r, cols].
// data/scale_inv point at the full weight and its full scale grid.
void dequantize_fp8_rows(const uint8_t* data, const float* scale_inv, int64_t cols, int64_t r0, int64_t r, float* dst);

}  // namespace dsv3
