#include "ops/bandwidth.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>

#include "ops/ops.h"

namespace dsv3::ops {

// Each thread reads its contiguous part as kStreams interleaved sub-streams, 64 bytes of each in
// turn, XOR-folding them into 8 words: one sequential stream per thread left a
// core's memory pipeline part-empty (on the 2-core Zen 5 VM, 1 stream read 42-52 GB/s where 8
// read 59-72), which would flatter every "fraction of bandwidth" measured against it.
double measure_read_bandwidth(size_t bytes, int reps) {
  constexpr size_t kStreams = 8, kWords = 8;  // 8 words = one 64-byte line per stream per turn
  const int threads = num_threads();
  const size_t unit = kStreams * kWords * static_cast<size_t>(threads);
  const size_t n = std::max(bytes / sizeof(uint64_t) / unit, size_t{1}) * unit;
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  double best = 0;
  volatile uint64_t sink = 0;
  const size_t per_thread = n / static_cast<size_t>(threads), seg = per_thread / kStreams;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(^ : total)
    {
      const uint64_t* p = buf.get() + per_thread * static_cast<size_t>(omp_get_thread_num());
      uint64_t acc[kWords] = {};
      for (size_t o = 0; o < seg; o += kWords)
        for (size_t s = 0; s < kStreams; ++s)
          for (size_t k = 0; k < kWords; ++k) acc[k] ^= p[s * seg + o + k];
      for (uint64_t v : acc) total ^= v;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / s / 1e9);
  }
  return best;
}

}  // namespace dsv3::ops
