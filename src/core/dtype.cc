#include "core/dtype.h"

#include <array>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace dsv3 {

namespace {
struct DTypeInfo {
  DType t;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kInfo[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},     {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},   {DType::I32, "I32", 4},   {DType::I64, "I64", 8},
    {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I4, "I4", 0},  // packed; sizes come from WeightView::nbytes
};

// Minifloat decoder evaluated at compile time, so the tables exist before any static initialiser.
constexpr float pow2(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}
constexpr float decode_minifloat(uint32_t v, int ebits, int mbits, int bias, bool fn_style) {
  const uint32_t sign = v >> (ebits + mbits);
  const uint32_t e = (v >> mbits) & ((1u << ebits) - 1);
  const uint32_t m = v & ((1u << mbits) - 1);
  const uint32_t emax = (1u << ebits) - 1;
  float out = 0.0f;
  if (fn_style && e == emax && m == (1u << mbits) - 1) {
    out = std::numeric_limits<float>::quiet_NaN();  // e4m3fn: only S.1111.111 is NaN, no infinity
  } else if (!fn_style && e == emax) {
    out = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else if (e == 0) {
    out = static_cast<float>(m) * pow2(1 - bias - mbits);
  } else {
    out = (1.0f + static_cast<float>(m) * pow2(-mbits)) * pow2(static_cast<int>(e) - bias);
  }
  return sign ? -out : out;
}
}  // namespace

namespace {
constexpr std::array<float, 256> make_table(int ebits, int mbits, int bias, bool fn_style) {
  std::array<float, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) t[i] = decode_minifloat(i, ebits, mbits, bias, fn_style);
  return t;
}
}  // namespace

constinit const std::array<float, 256> kE4M3ToF32 = make_table(4, 3, 7, true);
constinit const std::array<float, 256> kE5M2ToF32 = make_table(5, 2, 15, false);

size_t dtype_size(DType t) { return kInfo[static_cast<int>(t)].size; }
const char* dtype_name(DType t) { return kInfo[static_cast<int>(t)].name; }
std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& i : kInfo)
    if (name == i.name && i.t != DType::I4) return i.t;
  return std::nullopt;
}
bool dtype_is_float(DType t) {
  return t == DType::F16 || t == DType::BF16 || t == DType::F32 || t == DType::F64 || t == DType::F8_E4M3 ||
         t == DType::F8_E5M2;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  uint32_t out;
  if (e == 0) {
    if (m == 0) return std::bit_cast<float>(sign);
    const float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  } else if (e == 31) {
    out = sign | 0x7f800000u | (m << 13);
  } else {
    out = sign | ((e + 112) << 23) | (m << 13);
  }
  return std::bit_cast<float>(out);
}

// Round-to-nearest-even encoder for small IEEE-like floats with infinities (F16, E5M2).
// Values are scaled exactly by powers of two, so nearbyint (default mode: ties to even) is exact.
static uint32_t encode_ieee_small(float f, int ebits, int mbits, bool saturate) {
  const int bias = (1 << (ebits - 1)) - 1;
  const uint32_t sign = std::signbit(f) ? 1u << (ebits + mbits) : 0u;
  const uint32_t emax = (1u << ebits) - 1;
  if (std::isnan(f)) return sign | (emax << mbits) | (1u << (mbits - 1));
  const double a = std::fabs(static_cast<double>(f));
  const uint32_t max_code = saturate ? ((emax - 1) << mbits) | ((1u << mbits) - 1) : emax << mbits;
  if (std::isinf(f)) return sign | max_code;
  int e;
  std::frexp(a, &e);  // a = frac * 2^e, frac in [0.5, 1)
  e -= 1;             // a = 1.x * 2^e
  uint32_t code;
  if (a == 0.0) {
    code = 0;
  } else if (e < 1 - bias) {
    code = static_cast<uint32_t>(std::nearbyint(std::ldexp(a, bias - 1 + mbits)));  // may carry into normal
  } else {
    uint32_t q = static_cast<uint32_t>(std::nearbyint(std::ldexp(a, mbits - e))) - (1u << mbits);
    int ee = e;
    if (q == (1u << mbits)) {
      q = 0;
      ++ee;
    }
    if (ee + bias >= static_cast<int>(emax)) return sign | max_code;
    code = (static_cast<uint32_t>(ee + bias) << mbits) | q;
  }
  return sign | code;
}

uint16_t f32_to_f16(float f) { return static_cast<uint16_t>(encode_ieee_small(f, 5, 10, false)); }
uint8_t f32_to_e5m2(float f) { return static_cast<uint8_t>(encode_ieee_small(f, 5, 2, true)); }

void to_f32(DType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::F8_E4M3: {
      const auto* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = kE4M3ToF32[s[i]];
      return;
    }
    case DType::F8_E5M2: {
      const auto* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = kE5M2ToF32[s[i]];
      return;
    }
    case DType::F64: {
      const auto* s = static_cast<const double*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
      return;
    }
    default: fail("to_f32: {} is not a float type", dtype_name(t));
  }
}

void from_f32(DType t, const float* src, void* dst, size_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::F8_E4M3: {
      auto* d = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_e4m3(src[i]);
      return;
    }
    case DType::F8_E5M2: {
      auto* d = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_e5m2(src[i]);
      return;
    }
    default: fail("from_f32: cannot encode {}", dtype_name(t));
  }
}

}  // namespace dsv3
