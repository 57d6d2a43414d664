#include "convert/convert_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp8_block.h"
#include "core/tensor.h"

namespace dsv3 {

// One 128x128 block shares one scale, so each of its E4M3 codes maps to a fixed BF16 value:
// the 256-entry table bf16(e4m3(v) * scale) built per block turns the whole conversion into a
// byte-indexed lookup (the float product and its rounding are exactly those of
// dequantize_fp8_rows + f32_to_bf16, which the tests compare against).
void dequantize_fp8_to_bf16(const uint8_t* q, const float* scale_inv, int64_t rows, int64_t cols, uint16_t* dst,
                            const ReleaseFn& release) {
  const int64_t stripes = (rows + kFp8Block - 1) / kFp8Block;
  const int64_t sc = (cols + kFp8Block - 1) / kFp8Block;
#pragma omp parallel
  {
    std::vector<uint16_t> lut(static_cast<size_t>(sc * 256));  // [sc, 256]: the stripe's tables
#pragma omp for schedule(dynamic)
    for (int64_t s = 0; s < stripes; ++s) {
      const int64_t r0 = s * kFp8Block, r = std::min(kFp8Block, rows - r0);
      for (int64_t b = 0; b < sc; ++b) {
        const float scale = scale_inv[s * sc + b];
        for (int v = 0; v < 256; ++v) lut[b * 256 + v] = f32_to_bf16(e4m3_to_f32(static_cast<uint8_t>(v)) * scale);
      }
      // Row-major streaming through the stripe; the tables stay in L1/L2.
      for (int64_t i = 0; i < r; ++i) {
        const uint8_t* in = q + (r0 + i) * cols;
        uint16_t* out = dst + (r0 + i) * cols;
        for (int64_t c0 = 0; c0 < cols; c0 += kFp8Block) {
          const uint16_t* t = lut.data() + (c0 / kFp8Block) * 256;
          const int64_t c1 = std::min(cols, c0 + kFp8Block);
          for (int64_t j = c0; j < c1; ++j) out[j] = t[in[j]];
        }
      }
      if (release) release(q + r0 * cols, static_cast<size_t>(r * cols));
    }
  }
}

void quantize_to_fp8(DType t, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst, float* scale_inv,
                     const ReleaseFn& release) {
  const int64_t stripes = (rows + kFp8Block - 1) / kFp8Block;
  const int64_t sc = (cols + kFp8Block - 1) / kFp8Block;
  const size_t es = dtype_size(t);
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(kFp8Block * cols));  // [128, cols]
#pragma omp for schedule(dynamic)
    for (int64_t s = 0; s < stripes; ++s) {
      const int64_t r0 = s * kFp8Block, r = std::min(kFp8Block, rows - r0);
      const uint8_t* in = src + static_cast<size_t>(r0 * cols) * es;
      to_f32(t, in, buf.data(), static_cast<size_t>(r * cols));
      quantize_fp8_stripe(buf.data(), r, cols, cols, dst + r0 * cols, scale_inv + s * sc);
      if (release) release(in, static_cast<size_t>(r * cols) * es);
    }
  }
}

void quantize_to_int4(DType t, const uint8_t* src, const float* fp8_scale_inv, int64_t rows, int64_t cols,
                      int64_t group, uint32_t* packed, uint16_t* scales, const ReleaseFn& release) {
  const int64_t kp = (cols + 7) / 8, gc = (cols + group - 1) / group, sc = (cols + kFp8Block - 1) / kFp8Block;
  const size_t es = t == DType::F8_E4M3 ? 1 : dtype_size(t);
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* in = src + static_cast<size_t>(r * cols) * es;
      if (t == DType::F8_E4M3) {
        for (int64_t c = 0; c < cols; ++c)
          row[static_cast<size_t>(c)] = e4m3_to_f32(in[c]) * fp8_scale_inv[(r / kFp8Block) * sc + c / kFp8Block];
      } else {
        to_f32(t, in, row.data(), static_cast<size_t>(cols));
      }
      uint32_t* out = packed + r * kp;
      std::fill(out, out + kp, 0u);  // padding columns: nibble 0
      for (int64_t g = 0; g < gc; ++g) {
        const int64_t c0 = g * group, c1 = std::min(cols, c0 + group);
        float amax = 0.0f;
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(row[static_cast<size_t>(c)]));
        const uint16_t sb = f32_to_bf16(amax / 7.5f);
        scales[r * gc + g] = sb;
        const float s = bf16_to_f32(sb);
        for (int64_t c = c0; c < c1; ++c) {
          const float v = row[static_cast<size_t>(c)];  // a NaN weight becomes 0
          const float q = s > 0.0f && v == v ? std::clamp(std::nearbyint(v / s), -8.0f, 7.0f) : 0.0f;
          out[c / 8] |= static_cast<uint32_t>(static_cast<int>(q) + 8) << (4 * (c % 8));
        }
      }
      if (release && (r % 64 == 63 || r == rows - 1)) {
        const int64_t r0 = r / 64 * 64;
        release(src + static_cast<size_t>(r0 * cols) * es, static_cast<size_t>((r - r0 + 1) * cols) * es);
      }
    }
  }
}

void copy_bytes(const uint8_t* src, size_t n, uint8_t* dst, const ReleaseFn& release) {
  constexpr size_t kChunk = 4u << 20;
  const int64_t chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(dynamic) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t off = static_cast<size_t>(c) * kChunk, len = std::min(kChunk, n - off);
    std::memcpy(dst + off, src + off, len);
    if (release) release(src + off, len);
  }
}

}  // namespace dsv3
