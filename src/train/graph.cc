#include "train/graph.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "ops/grad.h"
#include "ops/lowp.h"
#include "ops/ops.h"
#include "runtime/rope.h"
#include "runtime/routing.h"
#include "runtime/sampler.h"

namespace dsv3 {

namespace {

using Buf = std::vector<float>;

float* grow(Buf& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}
float* zeros(Buf& v, int64_t n) {
  grow(v, n);
  std::fill(v.begin(), v.begin() + n, 0.0f);
  return v.data();
}
const float* f32(const WeightView& v) { return static_cast<const float*>(v.data) + v.row0 * v.cols; }

}  // namespace

double StepStats::mtp_loss() const {
  double s = 0;
  int d = 0;
  for (size_t k = 0; k < mtp_sum.size(); ++k, ++d)
    if (mtp_count[k] > 0) s += mtp_sum[k] / static_cast<double>(mtp_count[k]);
  return d ? s / d : 0.0;
}

double StepStats::mtp_agreement() const {
  return mtp_count.empty() || mtp_count[0] == 0 ? 0.0
                                                : static_cast<double>(mtp_agree[0]) / static_cast<double>(mtp_count[0]);
}

// Saved activations of one decoder layer ([N, ...] rows, N = B * Tl).
struct MoeActs {
  Buf scores;                   // [N, E] unbiased router scores
  std::vector<int64_t> chosen;  // [N, K]
  Buf wts;                      // [N, K] gate weights
  std::vector<int64_t> start;   // [E + 1] first expert row of each expert (rows grouped by expert)
  std::vector<int64_t> row_tok; // [N*K] token of each expert row
  std::vector<int32_t> row_slot;// [N*K] which of the token's K choices it is
  Buf g, u, y;                  // [N*K, I], [N*K, I], [N*K, H] per expert row
  Buf sg, su;                   // [N, I_shared] shared expert
  Buf coef;                     // [B, E] dL_bal / dP_i per token (alpha/B * f_i / Tl)
};
struct LayerActs {
  Buf x_in, h1, qa, qan, q, c_raw, c, kpe, kvb, o, x_mid, h2;
  Buf g, u;  // dense FFN [N, I]
  MoeActs moe;
};
struct MtpActs {
  int64_t Tk = 0, N = 0;
  std::vector<int32_t> emb_tok;  // [N] token whose embedding enters
  std::vector<int64_t> h_row;    // [N] row of the previous hidden state
  Buf e, hprev, cat, z, zf, dzf, dz_in;  // dz_in: gradient from the next module's hnorm
  double loss = 0;
};

struct TrainGraph::Impl {
  Params& p;
  const ModelConfig& c;
  Rope rope;
  Router router;
  int64_t H, nh, nope, rd, vd, qk, kvl, kvd, ql;
  float eps, scale;
  std::vector<LayerActs> acts;
  std::vector<MtpActs> mtp;
  Buf cs;                  // [T, rd] cos/sin pairs per position
  Buf x, xf, dxf, dx, tmp, dh, logits, s1, s2, s3, s4;
  Buf f_a, f_da, f_dg;     // ffn_bwd: [rows, I] each
  Buf l_out, l_d, m_dw;    // layer_fwd output, layer_bwd gradient [N, H]; moe_bwd gate-weight grads [N, K]
  int64_t B = 0;           // sequences in the current batch
  ops::GemmPrecision prec; // GEMM inputs of the Linears inside the blocks

  Impl(Params& params, ops::GemmPrecision precision)
      : p(params), c(params.config()), rope(c), router(c), H(c.hidden_size), nh(c.num_attention_heads),
        nope(c.qk_nope_head_dim), rd(c.qk_rope_head_dim), vd(c.v_head_dim), qk(nope + rd), kvl(c.kv_lora_rank),
        kvd(kvl + rd), ql(c.q_lora_rank), eps(static_cast<float>(c.rms_norm_eps)),
        scale(static_cast<float>(c.softmax_scale())), acts(static_cast<size_t>(c.total_layers())), prec(precision) {}

  const LayerWeights& W(int li) const { return p.weights().layers[static_cast<size_t>(li)]; }
  const LayerWeights& G(int li) const { return p.grads().layers[static_cast<size_t>(li)]; }

  // y[n, W.rows] = x . W^T and its two gradients (dW accumulates) for a Linear inside the
  // blocks (MLA projections, dense, shared and routed FFNs, the MTP projection), in `prec`.
  void linear(const float* x, int64_t n, const WeightView& w, float* y) const {
    ops::linear_fwd(prec, x, n, f32(w), w.rows, w.cols, y);
  }
  void linear_bwd(const float* x, const float* dy, int64_t n, const WeightView& w, const WeightView& dw, float* dx,
                  bool acc_dx) const {
    ops::linear_bwd(prec, x, dy, n, f32(w), w.rows, w.cols, mut(dw), dx, acc_dx);
  }
  // The router and the output heads stay fp32 in every mode, as the report keeps them.
  static void hp_linear(const float* x, int64_t n, const WeightView& w, float* y) {
    ops::linear_fwd(ops::GemmPrecision::F32, x, n, f32(w), w.rows, w.cols, y);
  }
  // dw null: the weight is frozen (its gradient would be thrown away).
  static void hp_linear_bwd(const float* x, const float* dy, int64_t n, const WeightView& w, float* dw, float* dx,
                            bool acc_dx) {
    ops::linear_bwd(ops::GemmPrecision::F32, x, dy, n, f32(w), w.rows, w.cols, dw, dx, acc_dx);
  }

  void rmsnorm_bwd(const float* x, const float* dy, int64_t n, const WeightView& w, const WeightView& dw, float* dx,
                   bool acc) {
    ops::rmsnorm_backward(x, dy, n, w.rows * w.cols, f32(w), eps, dx, mut(dw), acc);
  }

  // ---- attention -------------------------------------------------------------------------
  // Scores of query i of head hd of sequence b against keys 0..i, softmaxed into P [i+1].
  void attn_probs(const LayerActs& A, int64_t b, int64_t Tl, int64_t hd, int64_t i, float* P) const {
    const int64_t r0 = b * Tl;
    const float* qi = A.q.data() + ((r0 + i) * nh + hd) * qk;
    for (int64_t j = 0; j <= i; ++j) {
      const float* kn = A.kvb.data() + (r0 + j) * nh * (nope + vd) + hd * (nope + vd);
      P[j] = (ops::dot(qi, kn, nope) + ops::dot(qi + nope, A.kpe.data() + (r0 + j) * rd, rd)) * scale;
    }
    ops::softmax(P, i + 1);
  }

  void attn_fwd(int li, const float* h1, int64_t Tl, LayerActs& A, float* out) {
    const AttentionWeights& w = W(li).attn;
    const int64_t N = B * Tl;
    float* q = grow(A.q, N * nh * qk);
    if (ql > 0) {
      linear(h1, N, w.q_a, grow(A.qa, N * ql));
      ops::rmsnorm(A.qa.data(), N, ql, w.q_a_norm, eps, grow(A.qan, N * ql));
      linear(A.qan.data(), N, w.q_b, q);
    } else {
      linear(h1, N, w.q, q);
    }
    float* kv = grow(s1, N * kvd);
    linear(h1, N, w.kv_a, kv);
    float* craw = grow(A.c_raw, N * kvl);
    float* cn = grow(A.c, N * kvl);
    float* kpe = grow(A.kpe, N * rd);
    for (int64_t t = 0; t < N; ++t) {
      std::memcpy(craw + t * kvl, kv + t * kvd, static_cast<size_t>(kvl) * 4);
      std::memcpy(kpe + t * rd, kv + t * kvd + kvl, static_cast<size_t>(rd) * 4);
      const float* csr = cs.data() + (t % Tl) * rd;
      Rope::rotate(kpe + t * rd, csr, rd);
      for (int64_t hd = 0; hd < nh; ++hd) Rope::rotate(q + (t * nh + hd) * qk + nope, csr, rd);
    }
    ops::rmsnorm(craw, N, kvl, w.kv_a_norm, eps, cn);
    linear(cn, N, w.kv_b, grow(A.kvb, N * nh * (nope + vd)));
    float* o = zeros(A.o, N * nh * vd);
    const int threads = ops::num_threads();
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> P(static_cast<size_t>(Tl));
#pragma omp for collapse(2) schedule(dynamic)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t hd = 0; hd < nh; ++hd)
          for (int64_t i = 0; i < Tl; ++i) {
            attn_probs(A, b, Tl, hd, i, P.data());
            float* oi = o + ((b * Tl + i) * nh + hd) * vd;
            for (int64_t j = 0; j <= i; ++j)
              ops::axpy(P[j], A.kvb.data() + (b * Tl + j) * nh * (nope + vd) + hd * (nope + vd) + nope, oi, vd);
          }
    }
    linear(o, N, w.o, out);
  }

  // dout [N, H] -> dh1 [N, H] (overwritten); weight gradients accumulated.
  void attn_bwd(int li, int64_t Tl, LayerActs& A, const float* dout, float* dh1) {
    const AttentionWeights& w = W(li).attn;
    const AttentionWeights& g = G(li).attn;
    const int64_t N = B * Tl, kvbw = nh * (nope + vd);
    float* dO = grow(s1, N * nh * vd);
    linear_bwd(A.o.data(), dout, N, w.o, g.o, dO, false);
    float* dq = zeros(s2, N * nh * qk);
    float* dkvb = zeros(s3, N * kvbw);
    float* dkpe_h = zeros(s4, nh * N * rd);  // [nh, N, rd]: the rope key is shared by all heads
    const int threads = ops::num_threads();
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> P(static_cast<size_t>(Tl)), dP(static_cast<size_t>(Tl));
#pragma omp for collapse(2) schedule(dynamic)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t hd = 0; hd < nh; ++hd)
          for (int64_t i = 0; i < Tl; ++i) {
            const int64_t ri = b * Tl + i;
            attn_probs(A, b, Tl, hd, i, P.data());
            const float* doi = dO + (ri * nh + hd) * vd;
            for (int64_t j = 0; j <= i; ++j) {
              const float* vj = A.kvb.data() + (b * Tl + j) * kvbw + hd * (nope + vd) + nope;
              dP[j] = ops::dot(doi, vj, vd);
              ops::axpy(P[j], doi, dkvb + (b * Tl + j) * kvbw + hd * (nope + vd) + nope, vd);
            }
            ops::softmax_backward(P.data(), dP.data(), i + 1);
            const float* qi = A.q.data() + (ri * nh + hd) * qk;
            float* dqi = dq + (ri * nh + hd) * qk;
            for (int64_t j = 0; j <= i; ++j) {
              const float ds = dP[j] * scale;
              const int64_t rj = b * Tl + j;
              ops::axpy(ds, A.kvb.data() + rj * kvbw + hd * (nope + vd), dqi, nope);
              ops::axpy(ds, A.kpe.data() + rj * rd, dqi + nope, rd);
              ops::axpy(ds, qi, dkvb + rj * kvbw + hd * (nope + vd), nope);
              ops::axpy(ds, qi + nope, dkpe_h + (hd * N + rj) * rd, rd);
            }
          }
    }
    // kv path: kvb = kv_b(c), c = norm(c_raw), kpe = rope(k_pe) -> dkv [N, kvl + rd]
    float* dc = grow(dh, N * kvl);
    linear_bwd(A.c.data(), dkvb, N, w.kv_b, g.kv_b, dc, false);
    float* dcraw = grow(tmp, N * kvl);
    rmsnorm_bwd(A.c_raw.data(), dc, N, w.kv_a_norm, g.kv_a_norm, dcraw, false);
    float* dkv = grow(s3, N * kvd);  // dkvb is no longer needed
    for (int64_t t = 0; t < N; ++t) {
      std::memcpy(dkv + t * kvd, dcraw + t * kvl, static_cast<size_t>(kvl) * 4);
      float* dk = dkv + t * kvd + kvl;
      std::fill(dk, dk + rd, 0.0f);
      for (int64_t hd = 0; hd < nh; ++hd) ops::add(dk, dkpe_h + (hd * N + t) * rd, rd);
      const float* csr = cs.data() + (t % Tl) * rd;
      Rope::rotate_backward(dk, csr, rd);
      for (int64_t hd = 0; hd < nh; ++hd) Rope::rotate_backward(dq + (t * nh + hd) * qk + nope, csr, rd);
    }
    linear_bwd(A.h1.data(), dkv, N, w.kv_a, g.kv_a, dh1, false);
    if (ql > 0) {
      float* dqan = grow(s4, N * ql);
      linear_bwd(A.qan.data(), dq, N, w.q_b, g.q_b, dqan, false);
      float* dqa = grow(tmp, N * ql);
      rmsnorm_bwd(A.qa.data(), dqan, N, w.q_a_norm, g.q_a_norm, dqa, false);
      linear_bwd(A.h1.data(), dqa, N, w.q_a, g.q_a, dh1, true);
    } else {
      linear_bwd(A.h1.data(), dq, N, w.q, g.q, dh1, true);
    }
  }

  // ---- feed-forward ----------------------------------------------------------------------
  // y[rows, H] = down(silu(gate x) * up x); gate/up outputs saved in g, u [rows, I].
  void ffn_fwd(const MlpWeights& m, const float* xin, int64_t rows, float* g, float* u, float* y) {
    const int64_t I = m.gate.rows;
    linear(xin, rows, m.gate, g);
    linear(xin, rows, m.up, u);
    float* a = grow(tmp, rows * I);
    ops::silu_mul(g, u, a, rows * I);
    linear(a, rows, m.down, y);
  }
  // dy [rows, H] -> dx [rows, H] (+= with acc).
  void ffn_bwd(const MlpWeights& m, const MlpWeights& gm, const float* xin, int64_t rows, const float* g,
               const float* u, const float* dy, float* dx, bool acc) {
    const int64_t I = m.gate.rows;
    float* a = grow(f_a, rows * I);
    float* da = grow(f_da, rows * I);
    float* dg = grow(f_dg, rows * I);
    ops::silu_mul(g, u, a, rows * I);
    linear_bwd(a, dy, rows, m.down, gm.down, da, false);
    ops::silu_mul_backward(g, u, da, dg, da, rows * I);  // da becomes d(up)
    linear_bwd(xin, dg, rows, m.gate, gm.gate, dx, acc);
    linear_bwd(xin, da, rows, m.up, gm.up, dx, true);
  }

  void moe_fwd(int li, const float* h2, int64_t Tl, LayerActs& A, float* out, StepStats& st, const LossWeights& lw) {
    const MoeWeights& m = W(li).moe_w;
    MoeActs& M = A.moe;
    const int64_t N = B * Tl, E = c.n_routed_experts, K = c.num_experts_per_tok, I = c.moe_intermediate_size;
    float* logits = grow(s1, N * E);
    hp_linear(h2, N, m.router, logits);
    grow(M.scores, N * E);
    M.chosen.resize(static_cast<size_t>(N * K));
    grow(M.wts, N * K);
    for (int64_t t = 0; t < N; ++t)
      router.route(logits + t * E, m.bias, M.scores.data() + t * E, M.chosen.data() + t * K, M.wts.data() + t * K);
    // Group the N*K (token, choice) pairs by expert, in token order within each expert.
    std::vector<int64_t> cnt(static_cast<size_t>(E), 0);
    for (int64_t e : M.chosen) ++cnt[static_cast<size_t>(e)];
    M.start.assign(static_cast<size_t>(E + 1), 0);
    for (int64_t e = 0; e < E; ++e) M.start[e + 1] = M.start[e] + cnt[e];
    M.row_tok.resize(static_cast<size_t>(N * K));
    M.row_slot.resize(static_cast<size_t>(N * K));
    std::vector<int64_t> fill(M.start.begin(), M.start.end() - 1);
    for (int64_t t = 0; t < N; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t r = fill[M.chosen[t * K + k]]++;
        M.row_tok[r] = t;
        M.row_slot[r] = static_cast<int32_t>(k);
      }
    st.loads.emplace_back(cnt.begin(), cnt.end());
    st.moe_layer_index.push_back(li);

    if (m.has_shared) {
      const int64_t Is = m.shared.gate.rows;
      ffn_fwd(m.shared, h2, N, grow(M.sg, N * Is), grow(M.su, N * Is), out);
    } else {
      std::fill(out, out + N * H, 0.0f);
    }
    float* xin = grow(s2, N * K * H);
    for (int64_t r = 0; r < N * K; ++r) std::memcpy(xin + r * H, h2 + M.row_tok[r] * H, static_cast<size_t>(H) * 4);
    float* g = grow(M.g, N * K * I);
    float* u = grow(M.u, N * K * I);
    float* y = grow(M.y, N * K * H);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = M.start[e], n = M.start[e + 1] - r0;
      if (n > 0) ffn_fwd(m.experts[e], xin + r0 * H, n, g + r0 * I, u + r0 * I, y + r0 * H);
    }
    for (int64_t r = 0; r < N * K; ++r) {
      const int64_t t = M.row_tok[r];
      ops::axpy(M.wts[t * K + M.row_slot[r]], y + r * H, out + t * H, H);
    }
    // Sequence-wise balance loss alpha * sum_i f_i P_i (spec 9), f_i = E/(K*Tl) * count_i and
    // P_i = mean_t s_i / sum_j s_j; the counts are constants, so gradients reach P only.
    M.coef.assign(static_cast<size_t>(B * E), 0.0f);
    if (lw.balance == 0.0) return;
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> f(static_cast<size_t>(E), 0.0), P(static_cast<size_t>(E), 0.0);
      for (int64_t t = b * Tl; t < (b + 1) * Tl; ++t) {
        for (int64_t k = 0; k < K; ++k) f[M.chosen[t * K + k]] += 1.0;
        const float* s = M.scores.data() + t * E;
        double sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += s[e];
        for (int64_t e = 0; e < E; ++e) P[e] += s[e] / sum / static_cast<double>(Tl);
      }
      double lb = 0;
      for (int64_t e = 0; e < E; ++e) {
        f[e] *= static_cast<double>(E) / static_cast<double>(K * Tl);
        lb += f[e] * P[e];
        M.coef[b * E + e] = static_cast<float>(lw.balance / static_cast<double>(B) * f[e] / static_cast<double>(Tl));
      }
      st.balance += lw.balance / static_cast<double>(B) * lb;
    }
  }

  // dout [N, H] -> dh2 [N, H] (overwritten).
  void moe_bwd(int li, const float* h2, int64_t Tl, LayerActs& A, const float* dout, float* dh2) {
    const MoeWeights& m = W(li).moe_w;
    const MoeWeights& gm = G(li).moe_w;
    MoeActs& M = A.moe;
    const int64_t N = B * Tl, E = c.n_routed_experts, K = c.num_experts_per_tok, I = c.moe_intermediate_size;
    if (m.has_shared) ffn_bwd(m.shared, gm.shared, h2, N, M.sg.data(), M.su.data(), dout, dh2, false);
    else std::fill(dh2, dh2 + N * H, 0.0f);
    float* xin = grow(s2, N * K * H);
    float* dy = grow(s3, N * K * H);
    float* dxin = grow(s4, N * K * H);
    float* dw = grow(m_dw, N * K);
    for (int64_t r = 0; r < N * K; ++r) {
      const int64_t t = M.row_tok[r], k = M.row_slot[r];
      std::memcpy(xin + r * H, h2 + t * H, static_cast<size_t>(H) * 4);
      const float wt = M.wts[t * K + k];
      for (int64_t j = 0; j < H; ++j) dy[r * H + j] = wt * dout[t * H + j];
      dw[t * K + k] = ops::dot(dout + t * H, M.y.data() + r * H, H);
    }
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = M.start[e], n = M.start[e + 1] - r0;
      if (n > 0)
        ffn_bwd(m.experts[e], gm.experts[e], xin + r0 * H, n, M.g.data() + r0 * I, M.u.data() + r0 * I, dy + r0 * H,
                dxin + r0 * H, false);
    }
    for (int64_t r = 0; r < N * K; ++r) ops::add(dh2 + M.row_tok[r] * H, dxin + r * H, H);
    // Gate weights -> scores -> router logits.
    const float rsf = static_cast<float>(c.routed_scaling_factor);
    float* dlog = zeros(s1, N * E);
    for (int64_t t = 0; t < N; ++t) {
      const float* s = M.scores.data() + t * E;
      const int64_t* ch = M.chosen.data() + t * K;
      float* ds = dlog + t * E;
      if (router.normalizes()) {  // w_k = rsf * s_k / S, S = sum of the chosen s
        float S = 0, a = 0;
        for (int64_t k = 0; k < K; ++k) S += s[ch[k]];
        S += 1e-20f;
        for (int64_t k = 0; k < K; ++k) a += dw[t * K + k] * s[ch[k]];
        for (int64_t k = 0; k < K; ++k) ds[ch[k]] += rsf * (dw[t * K + k] - a / S) / S;
      } else {
        for (int64_t k = 0; k < K; ++k) ds[ch[k]] += rsf * dw[t * K + k];
      }
      const float* coef = M.coef.data() + (t / Tl) * E;  // balance loss through s / sum(s)
      float sum = 0, cbar = 0;
      for (int64_t e = 0; e < E; ++e) sum += s[e];
      for (int64_t e = 0; e < E; ++e) cbar += coef[e] * s[e] / sum;
      for (int64_t e = 0; e < E; ++e) ds[e] += (coef[e] - cbar) / sum;
      if (c.scoring_func == Scoring::kSigmoid) {
        for (int64_t e = 0; e < E; ++e) ds[e] *= s[e] * (1.0f - s[e]);
      } else {
        ops::softmax_backward(s, ds, E);
      }
    }
    hp_linear_bwd(h2, dlog, N, m.router, mut(gm.router), dh2, true);
  }

  // ---- decoder layer ---------------------------------------------------------------------
  void layer_fwd(int li, float* xr, int64_t Tl, StepStats& st, const LossWeights& lw) {
    const LayerWeights& L = W(li);
    LayerActs& A = acts[static_cast<size_t>(li)];
    const int64_t N = B * Tl;
    A.x_in.assign(xr, xr + N * H);
    float* h1 = grow(A.h1, N * H);
    ops::rmsnorm(xr, N, H, L.input_norm, eps, h1);
    float* out = grow(l_out, N * H);
    attn_fwd(li, h1, Tl, A, out);
    ops::add(xr, out, N * H);
    A.x_mid.assign(xr, xr + N * H);
    float* h2 = grow(A.h2, N * H);
    ops::rmsnorm(xr, N, H, L.post_norm, eps, h2);
    if (L.moe) {
      moe_fwd(li, h2, Tl, A, out, st, lw);
    } else {
      const int64_t I = L.mlp.gate.rows;
      ffn_fwd(L.mlp, h2, N, grow(A.g, N * I), grow(A.u, N * I), out);
    }
    ops::add(xr, out, N * H);
  }

  // dxr [N, H]: gradient of the layer's output in, of its input out.
  void layer_bwd(int li, float* dxr, int64_t Tl) {
    const LayerWeights& L = W(li);
    const LayerWeights& GL = G(li);
    LayerActs& A = acts[static_cast<size_t>(li)];
    const int64_t N = B * Tl;
    float* d = grow(l_d, N * H);
    if (L.moe) moe_bwd(li, A.h2.data(), Tl, A, dxr, d);
    else ffn_bwd(L.mlp, GL.mlp, A.h2.data(), N, A.g.data(), A.u.data(), dxr, d, false);
    rmsnorm_bwd(A.x_mid.data(), d, N, L.post_norm, GL.post_norm, dxr, true);
    attn_bwd(li, Tl, A, dxr, d);
    rmsnorm_bwd(A.x_in.data(), d, N, L.input_norm, GL.input_norm, dxr, true);
  }

  // ---- embeddings and heads --------------------------------------------------------------
  void embed(const WeightView& table, const int32_t* toks, int64_t n, float* out) const {
    for (int64_t t = 0; t < n; ++t)
      std::memcpy(out + t * H, f32(table) + static_cast<int64_t>(toks[t]) * H, static_cast<size_t>(H) * 4);
  }
  void embed_bwd(const WeightView& gtable, const int32_t* toks, int64_t n, const float* d) const {
    float* g = mut(gtable);
    for (int64_t t = 0; t < n; ++t) ops::add(g + static_cast<int64_t>(toks[t]) * H, d + t * H, H);
  }

  // Cross-entropy of head(xf) [N, V] against targets (-1: none), in row chunks so the logits
  // stay bounded; dxf [N, H] gets the gradient (scaled by grad_scale) when not null, the head's
  // gradient goes to ghead unless that is null (a frozen head), and pred
  // [N] each row's argmax (the greedy prediction, first of equal maxima as decoding picks) when
  // not null.
  double head_ce(const WeightView& head, float* ghead, const float* xf, int64_t N, const int32_t* tg,
                 float grad_scale, float* dxf, int32_t* pred) {
    const int64_t V = head.rows;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t{16} << 20) / V));
    double sum = 0;
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
      const int64_t n = std::min(chunk, N - r0);
      float* lg = grow(logits, n * V);
      hp_linear(xf + r0 * H, n, head, lg);
      if (pred)
        for (int64_t r = 0; r < n; ++r) pred[r0 + r] = argmax(lg + r * V, V);
      sum += ops::cross_entropy(lg, n, V, tg + r0, grad_scale, nullptr);
      if (dxf) hp_linear_bwd(xf + r0 * H, lg, n, head, ghead, dxf + r0 * H, false);
    }
    return sum;
  }

  StepStats run(const int32_t* tok, int64_t B_, int64_t T, const LossWeights& lw, bool backward) {
    B = B_;
    const ModelWeights& w = p.weights();
    const ModelWeights& gw = p.grads();
    const int64_t N = B * T, L = c.num_hidden_layers, D = c.num_nextn_predict_layers;
    StepStats st;
    st.mtp_sum.assign(static_cast<size_t>(D), 0.0);
    st.mtp_count.assign(static_cast<size_t>(D), 0);
    st.mtp_agree.assign(static_cast<size_t>(D), 0);
    const bool frozen = lw.main_frozen;
    grow(cs, T * rd);
    for (int64_t i = 0; i < T; ++i) rope.table(i, cs.data() + i * rd);

    float* xr = grow(x, N * H);
    embed(w.embed, tok, N, xr);
    for (int64_t li = 0; li < L; ++li) layer_fwd(static_cast<int>(li), xr, T, st, lw);
    float* xfr = grow(xf, N * H);
    ops::rmsnorm(xr, N, H, w.norm, eps, xfr);
    std::vector<int32_t> tg(static_cast<size_t>(N));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < T; ++i) tg[b * T + i] = i + 1 < T ? tok[b * T + i + 1] : -1;
    st.main_count = B * (T - 1);
    float* dxfr = backward && !frozen ? zeros(dxf, N * H) : nullptr;
    std::vector<int32_t> main_pred(D > 0 ? static_cast<size_t>(N) : 0);  // [N] greedy prediction of token i+1
    st.main_sum = head_ce(w.lm_head, frozen ? nullptr : mut(gw.lm_head), xfr, N, tg.data(),
                          st.main_count ? 1.0f / static_cast<float>(st.main_count) : 0.0f, dxfr,
                          D > 0 ? main_pred.data() : nullptr);

    // MTP module k at position i (0 <= i < Tk = T-1-k): the embedding of token i+1+k and the
    // previous hidden state at i (the main model's after model.norm, then module k-1's output)
    // predict token i+2+k.
    mtp.resize(static_cast<size_t>(D));
    int64_t Dk = 0;  // modules that have positions
    for (int64_t k = 0; k < D; ++k) {
      MtpActs& M = mtp[static_cast<size_t>(k)];
      M.Tk = T - 1 - k;
      if (M.Tk < 1) break;
      ++Dk;
      const int li = static_cast<int>(L + k);
      const MtpWeights& mw = W(li).mtp;
      const int64_t Tk = M.Tk, Nk = B * Tk;
      M.N = Nk;
      M.emb_tok.resize(static_cast<size_t>(Nk));
      M.h_row.resize(static_cast<size_t>(Nk));
      const float* hsrc = k == 0 ? xfr : mtp[static_cast<size_t>(k - 1)].z.data();
      const int64_t hT = k == 0 ? T : Tk + 1;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < Tk; ++i) {
          M.emb_tok[b * Tk + i] = tok[b * T + i + 1 + k];
          M.h_row[b * Tk + i] = b * hT + i;
        }
      float* e = grow(M.e, Nk * H);
      float* hp = grow(M.hprev, Nk * H);
      embed(mw.embed, M.emb_tok.data(), Nk, e);
      for (int64_t r = 0; r < Nk; ++r) std::memcpy(hp + r * H, hsrc + M.h_row[r] * H, static_cast<size_t>(H) * 4);
      float* cat = grow(M.cat, Nk * 2 * H);
      for (int64_t r = 0; r < Nk; ++r) {
        ops::rmsnorm(e + r * H, 1, H, mw.enorm, eps, cat + r * 2 * H);
        ops::rmsnorm(hp + r * H, 1, H, mw.hnorm, eps, cat + r * 2 * H + H);
      }
      float* z = grow(M.z, Nk * H);
      linear(cat, Nk, mw.eh_proj, z);
      layer_fwd(li, z, Tk, st, lw);
      float* zf = grow(M.zf, Nk * H);
      ops::rmsnorm(z, Nk, H, mw.head_norm, eps, zf);
      // The main model's greedy prediction of token i+2+k is its argmax at row i+1+k.
      std::vector<int32_t> tk(static_cast<size_t>(Nk)), ref(static_cast<size_t>(Nk)), pk(static_cast<size_t>(Nk));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < Tk; ++i) {
          ref[b * Tk + i] = main_pred[b * T + i + 1 + k];
          tk[b * Tk + i] = i + 1 < Tk ? (lw.mtp_main_targets ? ref[b * Tk + i] : tok[b * T + i + 2 + k]) : -1;
        }
      st.mtp_count[k] = B * (Tk - 1);
      const float gs = st.mtp_count[k] ? static_cast<float>(lw.mtp / static_cast<double>(D)) / static_cast<float>(st.mtp_count[k]) : 0.0f;
      // A shared head (V3's tied MTP head) is the main lm_head: frozen with it under --mtp-only.
      const bool head_frozen = frozen && G(li).mtp.head.data == gw.lm_head.data;
      st.mtp_sum[k] = head_ce(mw.head, head_frozen ? nullptr : mut(G(li).mtp.head), zf, Nk, tk.data(), gs,
                              backward ? zeros(M.dzf, Nk * H) : nullptr, pk.data());
      for (int64_t r = 0; r < Nk; ++r) st.mtp_agree[k] += tk[r] >= 0 && pk[r] == ref[r];
    }
    if (!backward) return st;

    for (int64_t k = Dk - 1; k >= 0; --k) {
      MtpActs& M = mtp[static_cast<size_t>(k)];
      const int li = static_cast<int>(L + k);
      const MtpWeights& mw = W(li).mtp;
      const MtpWeights& gm = G(li).mtp;
      const int64_t Nk = M.N;
      float* dz = grow(dx, Nk * H);
      if (k + 1 < Dk) std::memcpy(dz, M.dz_in.data(), static_cast<size_t>(Nk * H) * 4);
      rmsnorm_bwd(M.z.data(), M.dzf.data(), Nk, mw.head_norm, gm.head_norm, dz, k + 1 < Dk);
      layer_bwd(li, dz, M.Tk);
      float* dcat = grow(s1, Nk * 2 * H);
      linear_bwd(M.cat.data(), dz, Nk, mw.eh_proj, gm.eh_proj, dcat, false);
      float* de = grow(s2, Nk * H);
      float* dhn = grow(s3, Nk * H);
      for (int64_t r = 0; r < Nk; ++r) {
        std::memcpy(de + r * H, dcat + r * 2 * H, static_cast<size_t>(H) * 4);
        std::memcpy(dhn + r * H, dcat + r * 2 * H + H, static_cast<size_t>(H) * 4);
      }
      float* dee = grow(s4, Nk * H);
      rmsnorm_bwd(M.e.data(), de, Nk, mw.enorm, gm.enorm, dee, false);
      if (!(frozen && gm.embed.data == gw.embed.data)) embed_bwd(gm.embed, M.emb_tok.data(), Nk, dee);
      float* dhp = grow(tmp, Nk * H);
      rmsnorm_bwd(M.hprev.data(), dhn, Nk, mw.hnorm, gm.hnorm, dhp, false);
      float* dst = k == 0 ? dxfr : zeros(mtp[static_cast<size_t>(k - 1)].dz_in, mtp[static_cast<size_t>(k - 1)].N * H);
      if (dst)  // null: module 0's input gradient would go to the frozen main model
        for (int64_t r = 0; r < Nk; ++r) ops::add(dst + M.h_row[r] * H, dhp + r * H, H);
    }
    if (frozen) return st;
    float* d = grow(dx, N * H);
    rmsnorm_bwd(xr, dxfr, N, w.norm, gw.norm, d, false);
    // xr was overwritten by the layers: the final norm's input is the last layer's output,
    // which is what x holds now (layer_fwd updates it in place).
    for (int64_t li = L - 1; li >= 0; --li) layer_bwd(static_cast<int>(li), d, T);
    embed_bwd(gw.embed, tok, N, d);
    return st;
  }
};

TrainGraph::TrainGraph(Params& p, ops::GemmPrecision precision) : impl_(std::make_unique<Impl>(p, precision)) {}
TrainGraph::~TrainGraph() = default;
StepStats TrainGraph::run(const int32_t* tokens, int64_t B, int64_t T, const LossWeights& lw, bool backward) {
  DSV3_CHECK(B > 0 && T > 1, "train: a batch needs at least one sequence of two tokens (got {} x {})", B, T);
  return impl_->run(tokens, B, T, lw, backward);
}

}  // namespace dsv3
