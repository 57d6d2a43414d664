#include "core/fp8_block.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/tensor.h"

namespace dsv3 {

void quantize_fp8_stripe(const float* src, int64_t r, int64_t cols, int64_t ld, uint8_t* dst, float* scale_inv) {
  for (int64_t c0 = 0; c0 < cols; c0 += kFp8Block) {
    const int64_t c1 = std::min(cols, c0 + kFp8Block);
    float amax = 0.0f;
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = c0; j < c1; ++j) amax = std::max(amax, std::fabs(src[i * ld + j]));
    const float scale = fp8_tile_scale(amax);
    scale_inv[c0 / kFp8Block] = scale;
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = c0; j < c1; ++j) dst[i * cols + j] = f32_to_e4m3(src[i * ld + j] / scale);
  }
}

void dequantize_fp8_rows(const uint8_t* data, const float* scale_inv, int64_t cols, int64_t r0, int64_t r, float* dst) {
  const int64_t sc = (cols + kFp8Block - 1) / kFp8Block;
  for (int64_t i = 0; i < r; ++i) {
    const int64_t row = r0 + i;
    const float* s = scale_inv + (row / kFp8Block) * sc;
    const uint8_t* q = data + row * cols;
    for (int64_t j = 0; j < cols; ++j) dst[i * cols + j] = e4m3_to_f32(q[j]) * s[j / kFp8Block];
  }
}

}  // namespace dsv3
