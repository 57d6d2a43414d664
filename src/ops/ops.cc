// Public entry points: validate arguments (bad shapes/dtypes are user errors), then call the
// kernels of the selected SIMD level. Compiled for the baseline ISA.
#include "ops/ops.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "core/error.h"
#include "ops/kernels.h"

namespace dsv3::ops {
namespace {

std::atomic<int> g_threads{0};  // 0: not set yet, use omp_get_num_procs()
std::atomic<int> g_simd{-1};    // -1: not chosen yet
std::atomic<bool> g_prefill_bf16{false};
std::atomic<bool> g_int4_vnni{true};  // taken only where int4_vnni_supported()

const detail::Kernels& ref_kernels() {
  static const detail::Kernels k{&ref::matmul, &ref::matmul_batch, &ref::has_nan_codes, &ref::matmul_t, &ref::rmsnorm, &ref::silu_mul, &ref::softmax,
                                 &ref::add,    &ref::scale,    &ref::dot,     &ref::axpy,   &ref::gemm_fp8, &ref::round_bf16, &ref::quantize_fp8};
  return k;
}

Simd best_or_env() {
  Simd s = simd_supported(Simd::Avx512) ? Simd::Avx512 : simd_supported(Simd::Avx2) ? Simd::Avx2 : Simd::Scalar;
  if (const char* env = std::getenv("DSV3_SIMD"); env && *env) {
    const std::string_view v = env;
    if (v == "scalar") s = Simd::Scalar;
    else if (v == "avx2") s = Simd::Avx2;
    else if (v == "avx512") s = Simd::Avx512;
    else fail("DSV3_SIMD={}: expected scalar, avx2 or avx512", v);
    if (!simd_supported(s)) fail("DSV3_SIMD={}: this CPU does not support it", v);
  }
  return s;
}

const detail::Kernels& K() {
  switch (simd_level()) {
    case Simd::Avx512:  // every op goes through here: test the flag and the CPU bit, not the level again
      return g_int4_vnni.load(std::memory_order_relaxed) && __builtin_cpu_supports("avx512vnni") ? detail::avx512vnni_kernels()
                                                                                               : detail::avx512_kernels();
    case Simd::Avx2: return detail::avx2_kernels();
    default: return ref_kernels();
  }
}

void check_weight(const char* op, const WeightView& w) {
  DSV3_CHECK(w.data != nullptr || w.rows * w.cols == 0, "{}: weight has no data", op);
  DSV3_CHECK(w.rows >= 0 && w.cols >= 0 && w.row0 >= 0, "{}: weight has negative shape [{}, {}] or row0 {}",
             op, w.rows, w.cols, w.row0);
  switch (w.dtype) {
    case DType::F32:
    case DType::BF16:
    case DType::F16: return;
    case DType::F8_E4M3:
      DSV3_CHECK(w.scale_inv != nullptr, "{}: F8_E4M3 weight [{}, {}] has no scale_inv", op, w.rows, w.cols);
      return;
    case DType::I4:
      DSV3_CHECK(w.group_scale != nullptr && w.group > 0 && w.group % 2 == 0,
                 "{}: I4 weight [{}, {}] needs group scales and an even group size (got {})", op, w.rows, w.cols, w.group);
      return;
    default: fail("{}: weight dtype {} is not supported (F32, BF16, F16, F8_E4M3, I4)", op, dtype_name(w.dtype));
  }
}

void check_matmul(const char* op, int64_t n, int64_t ldx, int64_t xcols, int64_t ldy, int64_t ycols) {
  DSV3_CHECK(n >= 0, "{}: negative token count {}", op, n);
  DSV3_CHECK(n <= 1 || (ldx >= xcols && ldy >= ycols), "{}: row strides ldx {} / ldy {} below widths {} / {}",
             op, ldx, ldy, xcols, ycols);
}

}  // namespace

const char* simd_name(Simd s) {
  switch (s) {
    case Simd::Avx512: return "avx512";
    case Simd::Avx2: return "avx2";
    default: return "scalar";
  }
}

bool simd_supported(Simd s) {
  switch (s) {
    case Simd::Scalar: return true;
    case Simd::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Simd::Avx512:
      return simd_supported(Simd::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return false;
}

Simd simd_level() {
  int s = g_simd.load(std::memory_order_relaxed);
  if (s < 0) {
    s = static_cast<int>(best_or_env());
    g_simd.store(s);
  }
  return static_cast<Simd>(s);
}

void set_simd_level(Simd s) {
  DSV3_CHECK(simd_supported(s), "SIMD level {} is not supported by this CPU", simd_name(s));
  g_simd.store(static_cast<int>(s));
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }

namespace {

// Paths on an AVX-512 extension (BF16 prefill, the int4 VNNI GEMV) need the avx512 kernels and a
// CPU with the extension (cpu_has: __builtin_cpu_supports, which takes only literals).
bool avx512_with(bool cpu_has) { return simd_level() == Simd::Avx512 && cpu_has; }

void set_avx512_path(std::atomic<bool>& flag, bool on, bool cpu_has, std::string_view what, std::string_view feature) {
  if (on && !avx512_with(cpu_has))
    fail("{} needs the avx512 kernels on a CPU with {} (this one runs {}{}{})", what, feature, simd_name(simd_level()),
         cpu_has ? "" : ", without ", cpu_has ? "" : feature);
  flag.store(on);
}

}  // namespace

bool prefill_bf16_supported() { return avx512_with(__builtin_cpu_supports("avx512bf16")); }

void set_prefill_bf16(bool on) {
  set_avx512_path(g_prefill_bf16, on, __builtin_cpu_supports("avx512bf16"), "BF16 prefill", "AVX512_BF16");
}

bool int4_vnni_supported() { return avx512_with(__builtin_cpu_supports("avx512vnni")); }

void set_int4_vnni(bool on) {
  set_avx512_path(g_int4_vnni, on, __builtin_cpu_supports("avx512vnni"), "the int4 VNNI GEMV", "AVX512_VNNI");
}

bool detail::prefill_bf16() { return g_prefill_bf16.load(std::memory_order_relaxed); }
int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_num_procs();
}

void parallel_for_fn(int nt, int64_t count, bool dynamic, void (*fn)(void*, int64_t), void* ctx) {
  if (count < nt) nt = static_cast<int>(count);
  if (nt <= 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < count; ++i) fn(ctx, i);
    return;
  }
  if (dynamic) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t i = 0; i < count; ++i) fn(ctx, i);
  } else {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < count; ++i) fn(ctx, i);
  }
}

namespace detail {

int threads_for(int64_t work) { return work < (int64_t{1} << 16) ? 1 : num_threads(); }

void quantize_vnni_chunk(const float* xc, int8_t* p, float* unit) {
  constexpr int64_t C = 128;
  float amax = 0;
  for (int64_t k = 0; k < C; ++k) amax = std::fmax(amax, std::fabs(xc[k]));
  const float u = amax > 0 ? 127.0f / amax : 0.0f;
  *unit = amax > 0 ? amax / (127.0f * 16384.0f) : 0.0f;
  int32_t lane8[16] = {};  // 8 x the lane's sum of a1 2^14 + a2 2^7 + a3
  for (int64_t k = 0; k < C; ++k) {
    // v = a1 + a2 2^-7 + a3 2^-14 + error: each remainder is exact in float.
    float v = std::clamp(xc[k] * u, -127.0f, 127.0f);
    const int64_t at = (k & 1) * 64 + k / 2;  // even columns, then odd, as the nibbles come
    int32_t whole = 0;
    for (int q = 0; q < 3; ++q) {
      const float a = std::nearbyint(v);
      p[q * C + at] = static_cast<int8_t>(a);
      whole = whole * 128 + static_cast<int32_t>(a);
      v = (v - a) * 128.0f;
    }
    lane8[k / 8] += 8 * whole;
  }
  std::memcpy(p + 3 * C, lane8, sizeof lane8);
}

float* scratch(int slot, size_t n) {
  constexpr int kSlots = 4;
  struct Buf {
    std::unique_ptr<float[], void (*)(float*)> p{nullptr, [](float* q) { ::operator delete[](q, std::align_val_t{64}); }};
    size_t cap = 0;
  };
  thread_local Buf bufs[kSlots];
  Buf& b = bufs[slot];
  if (b.cap < n) {
    b.p.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})));
    b.cap = n;
  }
  return b.p.get();
}

}  // namespace detail

void matmul(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy, bool accumulate) {
  check_weight("matmul", w);
  check_matmul("matmul", n, ldx, w.cols, ldy, w.rows);
  K().matmul(x, n, ldx, w, y, ldy, accumulate);
}

void matmul_batch(std::span<const MatmulJob> jobs) {
  for (const MatmulJob& j : jobs) {
    check_weight("matmul_batch", j.w);
    check_matmul("matmul_batch", j.n, j.ldx, j.w.cols, j.ldy, j.w.rows);
  }
  K().matmul_batch(jobs);
}

bool has_nan_codes(const WeightView& w) {
  check_weight("has_nan_codes", w);
  return K().has_nan_codes(w);
}

void matmul_t(const float* x, int64_t n, int64_t ldx, const WeightView& w, float* y, int64_t ldy) {
  check_weight("matmul_t", w);
  check_matmul("matmul_t", n, ldx, w.rows, ldy, w.cols);
  K().matmul_t(x, n, ldx, w, y, ldy);
}

void rmsnorm(const float* x, int64_t n, int64_t d, const WeightView& w, float eps, float* y) {
  check_weight("rmsnorm", w);
  DSV3_CHECK(w.dtype != DType::F8_E4M3, "rmsnorm: an F8_E4M3 norm weight is not supported");
  DSV3_CHECK(w.rows * w.cols == d, "rmsnorm: weight has {} values, expected {}", w.rows * w.cols, d);
  // A norm weight is a whole vector, never a row slice.
  DSV3_CHECK(w.row0 == 0, "rmsnorm: weight must not be a row slice");
  K().rmsnorm(x, n, d, w, eps, y);
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) { K().silu_mul(gate, up, out, n); }
void softmax(float* x, int64_t n) { K().softmax(x, n); }
void add(float* y, const float* x, int64_t n) { K().add(y, x, n); }
void scale(float* y, float s, int64_t n) { K().scale(y, s, n); }
float dot(const float* a, const float* b, int64_t n) { return K().dot(a, b, n); }
void axpy(float a, const float* x, float* y, int64_t n) { K().axpy(a, x, y, n); }

void gemm_fp8(const Fp8Gemm& g) {
  DSV3_CHECK(g.M >= 0 && g.K >= 0 && g.N >= 0 && g.ldc >= g.N, "gemm_fp8: bad shape [{}, {}] x [{}, {}], ldc {}",
             g.M, g.K, g.K, g.N, g.ldc);
  DSV3_CHECK(g.bn == 1 || g.bn == kFp8Block, "gemm_fp8: B tiles must be 128x1 or 128x128 (bn {})", g.bn);
  K().gemm_fp8(g);
}
void round_bf16(const float* src, float* dst, int64_t n) { K().round_bf16(src, dst, n); }
void quantize_fp8(const float* src, int64_t M, int64_t K_, int64_t ld, int64_t tr, int64_t tc, float* q, float* s) {
  DSV3_CHECK((tr == 1 || tr == kFp8Block) && (tc == 1 || tc == kFp8Block) && M >= 0 && K_ >= 0 && ld >= K_,
             "quantize_fp8: bad tile {}x{} or shape [{}, {}] (ld {})", tr, tc, M, K_, ld);
  K().quantize_fp8(src, M, K_, ld, tr, tc, q, s);
}

}  // namespace dsv3::ops
