// Helpers shared by the test binaries.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace dsv3::testing {

// Restores the SIMD level and thread count a test changed.
struct OpsState {
  ops::Simd simd = ops::simd_level();
  int threads = ops::num_threads();
  ~OpsState() {
    ops::set_simd_level(simd);
    ops::set_num_threads(threads);
    ops::set_prefill_bf16(false);
    if (ops::int4_vnni_supported()) ops::set_int4_vnni(true);  // the default
  }
};

// n values ~ N(0, sd^2) from rng (the op tests' random inputs).
inline std::vector<float> random_vec(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Runs a shell command and returns its stdout; rc receives the exit status (-1 if it did not
// exit normally, e.g. killed by a signal).
inline std::string run_cmd(const std::string& cmd, int& rc) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    rc = -1;
    return out;
  }
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, k);
  const int st = pclose(p);
  rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

}  // namespace dsv3::testing
