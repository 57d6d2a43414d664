// Backward ops for training, beside the forward ops of ops.h. Same conventions: float32
// activations, row-major [rows, cols] with explicit row strides, fp32 accumulation, results
// independent of the thread count (threads split outputs, never a reduction). Each op has a
// scalar twin in dsv3::ops::ref with the same signature, tested against it (test_grad_ops).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace dsv3::ops {

// Weight gradient of y = x . W^T:  dw[R, C] (+)= dy[n, R]^T . x[n, C].
void matmul_wgrad(const float* dy, int64_t n, int64_t lddy, const float* x, int64_t ldx, float* dw, int64_t R,
                  int64_t C, bool accumulate);
// Input gradient of y = x . W^T:  dx[n, w.cols] (+)= dy[n, w.rows] . W  (W any matmul dtype).
void matmul_dgrad(const float* dy, int64_t n, int64_t lddy, const WeightView& w, float* dx, int64_t lddx,
                  bool accumulate);
// Backward of y = rmsnorm(x) * w (x [n, d], w [d] float32): dx[n, d] (+)= ..., dw[d] += ...
// (dw always accumulates; null skips it).
void rmsnorm_backward(const float* x, const float* dy, int64_t n, int64_t d, const float* w, float eps, float* dx,
                      float* dw, bool accumulate_dx);
// Backward of out = silu(gate) * up, elementwise over n values.
void silu_mul_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n);
// Backward of p = softmax(z) in place: dp[n] <- p * (dp - sum(p * dp)) = dz.
void softmax_backward(const float* p, float* dp, int64_t n);
// Cross-entropy of logits [n, V] (row stride V) against targets [n] (a negative target: no
// loss, zero gradient). Overwrites logits with grad_scale * (softmax - onehot), writes each
// row's log-probability of its target to logprob [n] (0 where no target) when not null, and
// returns the sum of -log p(target) in double.
double cross_entropy(float* logits, int64_t n, int64_t V, const int32_t* targets, float grad_scale, float* logprob);

namespace ref {
void matmul_wgrad(const float* dy, int64_t n, int64_t lddy, const float* x, int64_t ldx, float* dw, int64_t R,
                  int64_t C, bool accumulate);
void matmul_dgrad(const float* dy, int64_t n, int64_t lddy, const WeightView& w, float* dx, int64_t lddx,
                  bool accumulate);
void rmsnorm_backward(const float* x, const float* dy, int64_t n, int64_t d, const float* w, float eps, float* dx,
                      float* dw, bool accumulate_dx);
void silu_mul_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n);
void softmax_backward(const float* p, float* dp, int64_t n);
double cross_entropy(float* logits, int64_t n, int64_t V, const int32_t* targets, float grad_scale, float* logprob);
}  // namespace ref

}  // namespace dsv3::ops
