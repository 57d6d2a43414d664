// Element types of checkpoints and their exact conversions to and from float32.
// FP8 E4M3 is torch.float8_e4m3fn: bias 7, max 448, NaN 0x7f/0xff, no infinity.
// Encoders round to nearest even; the FP8 encoders saturate (clamp to +-max) as the official
// quantiser does (it clamps before the cast).
#pragma once
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3 {

// I4 is never a file dtype: it marks a WeightView over a compressed-tensors pack-quantized weight
// (int4 packed into I32 tensors; see WeightView), so parse_dtype does not return it.
enum class DType : uint8_t { BOOL, U8, I8, I16, I32, I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, I4 };

size_t dtype_size(DType t);
// Name as written in safetensors headers ("BF16", "F8_E4M3", ...).
const char* dtype_name(DType t);
std::optional<DType> parse_dtype(std::string_view name);
// True for the float types a weight may have (F32, F16, BF16, F8_*).
bool dtype_is_float(DType t);

// ---- bfloat16 ----
inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

// ---- float16 (IEEE binary16) ----
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// ---- FP8 ----
extern const std::array<float, 256> kE4M3ToF32;
extern const std::array<float, 256> kE5M2ToF32;
inline float e4m3_to_f32(uint8_t v) { return kE4M3ToF32[v]; }
inline float e5m2_to_f32(uint8_t v) { return kE5M2ToF32[v]; }
constexpr float kE4M3Max = 448.0f;
constexpr float kE5M2Max = 57344.0f;

// Round to nearest even, saturating to +-448; NaN stays NaN (0x7f with sign).
inline uint8_t f32_to_e4m3(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  bits &= 0x7fffffffu;
  if (bits > 0x7f800000u) return sign | 0x7f;
  if (bits >= 0x43e00000u) return sign | 0x7e;  // >= 448 (incl. inf): saturate
  uint32_t r;
  if (bits < (121u << 23)) {
    // Below 2^-6: subnormal. Adding 2^14 makes the FPU round to the 2^-9 subnormal step.
    const float t = std::bit_cast<float>(bits) + std::bit_cast<float>(141u << 23);
    r = std::bit_cast<uint32_t>(t) - (141u << 23);
  } else {
    const uint32_t odd = (bits >> 20) & 1u;
    bits += (static_cast<uint32_t>(7 - 127) << 23) + 0x7ffffu + odd;
    r = bits >> 20;
  }
  return sign | static_cast<uint8_t>(r);
}
// Round to nearest even, saturating to +-57344; NaN stays NaN.
uint8_t f32_to_e5m2(float f);

// Converts n elements of type `t` at `src` to float32.
void to_f32(DType t, const void* src, float* dst, size_t n);
// Converts n float32 values to type `t` (float types only).
void from_f32(DType t, const float* src, void* dst, size_t n);

}  // namespace dsv3
