// AVX-512 (F, BW, VL, DQ) kernels; this file alone is compiled with those flags (CMakeLists.txt)
// and is only called after a run-time CPU check (ops.cc).
#include "ops/kernels_impl.h"
#include "ops/simd_avx512.h"

namespace dsv3::ops::detail {

const Kernels& avx512_kernels() { return kernels_for<Avx512>(); }

}  // namespace dsv3::ops::detail
