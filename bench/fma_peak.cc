// fp32 FMA peak of this CPU: the denominator of "achieved / peak" in bench/train_vs_torch.sh.
//
// Standalone on purpose (no dsv3 libraries): the script compiles it with
//   g++ -O2 -fopenmp -mavx512f -mfma   (or -mavx2 -mfma where the CPU lacks AVX-512)
// and runs `fma_peak THREADS`. It prints one JSON line:
//   {"isa": "avx512", "lanes": 16, "gflops_1t": ..., "gflops_nt": ..., "threads": N}
//
// Method: ACC independent accumulator chains of vector FMAs (a = a * b + c), each chain
// carrying its own register. FMA latency is 4 cycles on Zen 4 / Ice Lake and there are two FMA
// pipes, so at least 8 chains are needed to keep both busy; 12 leaves slack and still fits in
// the 16 (AVX2) / 32 (AVX-512) vector registers. b is just below 1 and c tiny, so the values
// neither overflow nor go denormal. Each measurement is the best of 10 short windows:
// on a shared VM the best window is the closest to what the hardware can do.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int kAcc = 12;
constexpr long kInner = 1 << 23;  // FMAs per chain per call: ~100M FMA instructions, ~15-30 ms

#if defined(__AVX512F__)
using V = __m512;
constexpr int kLanes = 16;
constexpr const char* kIsa = "avx512";
inline V splat(float x) { return _mm512_set1_ps(x); }
inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
#else
using V = __m256;
constexpr int kLanes = 8;
constexpr const char* kIsa = "avx2";
inline V splat(float x) { return _mm256_set1_ps(x); }
inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
#endif
// Outside the timed loop, so a plain store is fine (and avoids a GCC 12 -Wuninitialized
// false positive inside _mm512_reduce_add_ps).
inline float hsum(V a) {
  alignas(64) float t[kLanes];
  std::memcpy(t, &a, sizeof a);
  float s = 0;
  for (float x : t) s += x;
  return s;
}

// kAcc * kInner vector FMAs; the returned sum keeps the compiler from deleting the loop.
// `seed` comes from the command line so nothing can be constant-folded.
float chains(float seed) {
  V a[kAcc];
  for (int i = 0; i < kAcc; ++i) a[i] = splat(seed + static_cast<float>(i));
  const V b = splat(0.999999f), c = splat(1e-7f);
  for (long n = 0; n < kInner; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < kAcc; ++i) a[i] = fma(a[i], b, c);
  }
  float s = 0;
  for (int i = 0; i < kAcc; ++i) s += hsum(a[i]);
  return s;
}

// GFLOP/s of `threads` threads each running chains() (2 FLOP per lane per FMA), best of `reps`.
double measure(int threads, float seed, int reps, float* sink) {
  const double flop = 2.0 * kLanes * kAcc * static_cast<double>(kInner) * threads;
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    float s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
    s += chains(seed + static_cast<float>(omp_get_thread_num()));
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    *sink += s;
    best = std::max(best, flop / dt / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::max(1, std::atoi(argv[1])) : omp_get_num_procs();
  const float seed = static_cast<float>(argc) * 0.25f;
  float sink = 0;
  measure(threads, seed, 2, &sink);  // warm-up: clocks up, threads created
  const double one = measure(1, seed, 10, &sink);
  const double all = measure(threads, seed, 10, &sink);
  std::printf("{\"isa\": \"%s\", \"lanes\": %d, \"accumulators\": %d, \"gflops_1t\": %.1f, "
              "\"gflops_nt\": %.1f, \"threads\": %d, \"sink\": %.3g}\n",
              kIsa, kLanes, kAcc, one, all, threads, static_cast<double>(sink));
  return 0;
}
