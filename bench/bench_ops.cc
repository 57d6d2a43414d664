// Kernel benchmark: prints the machine's measured read bandwidth beside GEMV (decode) weight
// bandwidth and prefill GFLOP/s for V3-like shapes, FP8 and BF16 weights.
//   bench_ops [--quick]      (DSV3_SIMD=scalar|avx2|avx512 forces a SIMD level)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "ops/ops.h"

using namespace dsv3;
using Clock = std::chrono::steady_clock;

namespace {

double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Best seconds per call of f over repeated runs lasting at least min_s in total: wall clock,
// and CPU time of the calling thread (with one thread, the time the kernel actually ran even
// when other processes share the cores).
struct Timing {
  double wall = 1e30, cpu = 1e30;
};
template <class F>
Timing time_best(F&& f, double min_s = 0.5) {
  f();  // warm-up (page faults, scratch buffers)
  Timing best;
  double total = 0;
  int runs = 0;
  while (total < min_s || runs < 3) {
    const auto t0 = Clock::now();
    const double c0 = thread_cpu_s();
    f();
    const double c = thread_cpu_s() - c0;
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best.wall = std::min(best.wall, s);
    best.cpu = std::min(best.cpu, c);
    total += s;
    ++runs;
  }
  return best;
}

// Read-only streaming over `buf` with `threads` threads; returns GB/s (wall, and for one
// thread also by CPU time).
Timing read_bandwidth(const std::vector<uint64_t>& buf, int threads) {
  volatile uint64_t sink = 0;
  const int64_t n = static_cast<int64_t>(buf.size());
  const Timing s = time_best([&] {
    uint64_t x = 0;
#pragma omp parallel for num_threads(threads) reduction(^ : x) schedule(static)
    for (int64_t i = 0; i < n; ++i) x ^= buf[i];
    sink = sink + x;
  });
  return {static_cast<double>(n) * 8 / s.wall / 1e9, static_cast<double>(n) * 8 / s.cpu / 1e9};
}

struct Weight {
  std::vector<uint8_t> bytes;
  std::vector<float> scale;
  WeightView view;
};

Weight make_weight(DType dt, int64_t rows, int64_t cols) {
  Weight w;
  w.bytes.resize(static_cast<size_t>(rows * cols) * dtype_size(dt));
  std::mt19937 rng(7);
  if (dt == DType::F8_E4M3) {
    for (auto& b : w.bytes) {
      b = static_cast<uint8_t>(rng());
      if ((b & 0x7f) == 0x7f) b ^= 1;  // no NaN codes
    }
    w.scale.assign(static_cast<size_t>(((rows + 127) / 128) * ((cols + 127) / 128)), 1e-3f);
  } else if (dt == DType::I4) {  // random nibbles, group 128, float32 scales
    w.view.cols = cols;
    w.view.group = 128;
    w.bytes.resize(static_cast<size_t>(rows * w.view.packed_row_bytes()));
    for (auto& b : w.bytes) b = static_cast<uint8_t>(rng());
    w.scale.assign(static_cast<size_t>(rows * w.view.group_cols()), 1e-3f);
    w.view.group_scale = w.scale.data();
    w.view.group_scale_dtype = DType::F32;
  } else {  // BF16: random values around 1e-2
    std::normal_distribution<float> nd(0.f, 0.01f);
    auto* p = reinterpret_cast<uint16_t*>(w.bytes.data());
    for (int64_t i = 0; i < rows * cols; ++i) p[i] = f32_to_bf16(nd(rng));
  }
  w.view.data = w.bytes.data();
  w.view.dtype = dt;
  w.view.rows = rows;
  w.view.cols = cols;
  w.view.scale_inv = dt == DType::F8_E4M3 ? w.scale.data() : nullptr;
  // No NaN codes, as the model records after its first-use scan (kernels then skip theirs).
  w.view.nan_state = ops::has_nan_codes(w.view) ? -1 : 1;
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int cores = omp_get_num_procs();
  std::printf("simd %s, %d cores\n", ops::simd_name(ops::simd_level()), cores);

  std::vector<uint64_t> buf((quick ? 256u : 1024u) << 17, 1);  // 256 MB / 1 GB
  double bw[3] = {}, bw_cpu1 = 0;
  for (int t = 1; t <= std::min(cores, 2); ++t) {
    const Timing r = read_bandwidth(buf, t);
    bw[t] = r.wall;
    if (t == 1) bw_cpu1 = r.cpu;
    std::printf("memory read bandwidth, %d thread(s): %.1f GB/s", t, bw[t]);
    if (t == 1) std::printf(" (by thread CPU time %.1f GB/s)", bw_cpu1);
    std::printf("\n");
  }
  buf = {};

  const int64_t shapes[][2] = {{2048, 7168}, {7168, 2048}, {18432, 7168}};
  std::printf("\n%-8s %-12s %3s %7s %9s %9s %7s %10s %7s\n", "dtype", "W [R, C]", "n", "threads", "ms", "GB/s",
              "of bw", "cpu GB/s", "of bw");
  // I4 twice where the CPU has AVX512_VNNI: the float GEMV, then the integer one ("I4 vnni").
  struct Kind {
    DType dt;
    bool vnni;
  };
  std::vector<Kind> kinds = {{DType::F8_E4M3, false}, {DType::BF16, false}, {DType::I4, false}};
  if (ops::int4_vnni_supported()) kinds.push_back({DType::I4, true});
  for (const Kind& kind : kinds)
    for (const auto& sh : shapes) {
      if (quick && sh[0] == 18432) continue;
      const DType dt = kind.dt;
      if (ops::int4_vnni_supported()) ops::set_int4_vnni(kind.vnni);
      const std::string name = std::string(dtype_name(dt)) + (kind.vnni ? " vnni" : "");
      // Enough copies to rotate through that the weights come from memory, not the L3 cache.
      const size_t bytes = dt == DType::I4 ? static_cast<size_t>(sh[0] * sh[1] / 2) : static_cast<size_t>(sh[0] * sh[1]) * dtype_size(dt);
      std::vector<Weight> ws;
      for (size_t c = 0; c < std::max<size_t>(1, (size_t{96} << 20) / bytes + 1); ++c)
        ws.push_back(make_weight(dt, sh[0], sh[1]));
      size_t next = 0;
      std::vector<float> x(8 * sh[1], 0.5f), y(8 * sh[0]);
      for (int t = 1; t <= std::min(cores, 2); ++t) {
        ops::set_num_threads(t);
        for (int64_t n : {1, 2, 4, 8}) {
          if (n > 1 && t == 1) continue;
          const Timing s = time_best([&] {
            ops::matmul(x.data(), n, sh[1], ws[next].view, y.data(), sh[0]);
            next = (next + 1) % ws.size();
          });
          const double gbs = static_cast<double>(bytes) / s.wall / 1e9;
          std::printf("%-8s %5lldx%-6lld %3lld %7d %9.3f %9.1f %6.0f%%", name.c_str(), (long long)sh[0],
                      (long long)sh[1], (long long)n, t, s.wall * 1e3, gbs, 100 * gbs / bw[t]);
          if (t == 1) {
            const double cgbs = static_cast<double>(bytes) / s.cpu / 1e9;
            std::printf(" %10.1f %6.0f%%", cgbs, 100 * cgbs / bw_cpu1);
          }
          std::printf("\n");
        }
      }
      ops::set_num_threads(0);
    }

  // A MoE decode step in miniature, in configs/bench-5gb.json's shapes: per layer one token
  // through 7 experts (6 routed + 1 shared), their gate and up projections [1024, 2048] in one
  // matmul_batch, then their down projections [2048, 1024] in another: from memory (8 layers,
  // 336 MB in FP8) and from L3 (1 layer, 42 MB... as far as L3 holds it). FP8, and int4 (group
  // 128; the VNNI GEMV where the CPU has it), whose bytes are the packed weights.
  for (DType dt : {DType::F8_E4M3, DType::I4}) {
    std::printf("\ndecode step: 1 token, %s experts [1024, 2048] x 14 + [2048, 1024] x 7 per layer\n", dtype_name(dt));
    for (int layers : {8, 1}) {
      std::vector<Weight> ws;
      for (int l = 0; l < layers; ++l) {
        for (int i = 0; i < 14; ++i) ws.push_back(make_weight(dt, 1024, 2048));
        for (int i = 0; i < 7; ++i) ws.push_back(make_weight(dt, 2048, 1024));
      }
      double bytes = 0;  // weight bytes (int4: packed), scales aside
      for (const Weight& w : ws) bytes += static_cast<double>(w.bytes.size());
      std::vector<float> x(2048 * 7, 0.5f), y(2048 * 14);
      std::vector<ops::MatmulJob> up, down;  // per layer: up [14 l, 14 l + 14), down [7 l, 7 l + 7)
      for (int l = 0; l < layers; ++l) {
        for (int i = 0; i < 14; ++i) up.push_back({x.data(), 1, 2048, ws[21 * l + i].view, y.data() + i * 1024, 1024});
        for (int i = 0; i < 7; ++i) down.push_back({x.data() + i * 1024, 1, 1024, ws[21 * l + 14 + i].view, y.data() + i * 2048, 2048});
      }
      for (int t = 1; t <= std::min(cores, 2); ++t) {
        ops::set_num_threads(t);
        const Timing s = time_best([&] {
          for (int l = 0; l < layers; ++l) {
            ops::matmul_batch(std::span(up).subspan(14 * l, 14));
            ops::matmul_batch(std::span(down).subspan(7 * l, 7));
          }
        });
        const double weights = layers * 21 * 1024.0 * 2048.0, gbs = bytes / s.wall / 1e9;
        std::printf("  %d layer(s) (%3.0f MB), %d thread(s): %6.1f GB/s (%3.0f%% of measured read bandwidth), %5.1f G weights/s\n",
                    layers, bytes / 1e6, t, gbs, 100 * gbs / bw[t], weights / s.wall / 1e9);
      }
      ops::set_num_threads(0);
    }
  }

  // The GEMV from L2 (one thread, one token, 256 rows x 2048: 512 KB in FP8, 1 MB in BF16,
  // 256 KB in int4): what one core computes when memory is not in the way, i.e. the most decode
  // can read per core, whatever the bandwidth.
  std::printf("\nGEMV from L2: 1 token, 1 thread, [256, 2048]\n");
  for (DType dt : {DType::F8_E4M3, DType::BF16, DType::I4}) {
    Weight w = make_weight(dt, 256, 2048);
    std::vector<float> x(2048, 0.5f), y(256);
    ops::set_num_threads(1);
    const Timing s = time_best([&] {
      for (int k = 0; k < 100; ++k) ops::matmul(x.data(), 1, 2048, w.view, y.data(), 256);
    });
    ops::set_num_threads(0);
    std::printf("  %-8s %6.1f G weights/s = %5.1f GB/s of weights\n", dtype_name(dt), 100 * 256 * 2048.0 / s.wall / 1e9,
                100 * static_cast<double>(w.bytes.size()) / s.wall / 1e9);
  }

  std::printf("\nprefill, all %d threads; 'cpu' columns: one thread, by its CPU time\n", cores);
  std::printf("%-8s %-12s %4s %9s %9s %10s %13s\n", "dtype", "W [R, C]", "n", "ms", "GFLOP/s", "tok/s",
              "cpu GFLOP/s");
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    for (const auto& sh : shapes) {
      if (sh[0] == 18432) continue;
      Weight w = make_weight(dt, sh[0], sh[1]);
      std::vector<float> x(512 * sh[1], 0.5f), y(512 * sh[0]);
      for (int64_t n : {8, 16, 32, 128, 512}) {
        if (quick && n == 512) continue;
        const double flop = 2.0 * n * sh[0] * sh[1];
        ops::set_num_threads(0);
        const Timing s = time_best([&] { ops::matmul(x.data(), n, sh[1], w.view, y.data(), sh[0]); });
        ops::set_num_threads(1);
        const Timing s1 = time_best([&] { ops::matmul(x.data(), n, sh[1], w.view, y.data(), sh[0]); }, 0.2);
        ops::set_num_threads(0);
        std::printf("%-8s %5lldx%-6lld %4lld %9.3f %9.1f %10.0f %13.1f\n", dtype_name(dt), (long long)sh[0],
                    (long long)sh[1], (long long)n, s.wall * 1e3, flop / s.wall / 1e9, n / s.wall, flop / s1.cpu / 1e9);
      }
    }
  return 0;
}
