#include "runtime/model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "dist/comm.h"
#include "io/checkpoint.h"
#include "ops/ops.h"
#include "runtime/routing.h"

namespace dsv3 {

// Scratch buffers, grown to the largest batch seen and reused (bounded workspace).
struct Model::Workspace {
  std::vector<float> x, h, tmp, q, qa, kv, q_lat, qcat, o_lat, ov, router, mtp_cat;
  std::vector<float> eg, eu, ex, ey;    // expert gather / gate / up / down rows
  std::vector<int64_t> pos;             // [n] position of each token
  std::vector<SeqCache*> seq;           // [n] cache of each token
  std::vector<float> scores;            // per thread: scores [8, ctx] + one block's output [8, kv_lora + rope]
  std::vector<float> rope_cs;           // [n, rope] cos/sin table of each token's position (store_latents)
};

namespace {
// Expert-parallel control ops (Model::ep_header); ops >= 0 are MoE layer indices.
constexpr int kOpQuit = -1, kOpStats = -2, kOpNone = -3;

// Bytes of a weight with its block scales.
double view_bytes(const WeightView& v) {
  double b = static_cast<double>(v.nbytes());
  if (v.scale_inv) b += static_cast<double>((v.rows + 127) / 128 * v.scale_cols()) * 4.0;
  return b;
}

// Same matrix, byte for byte (data and any scales): then either view serves for the other.
bool same_weight(const WeightView& a, const WeightView& b) {
  if (a.dtype != b.dtype || a.rows != b.rows || a.cols != b.cols || a.row0 != 0 || b.row0 != 0 || a.group != b.group ||
      a.group_scale_dtype != b.group_scale_dtype || !a.scale_inv != !b.scale_inv || !a.group_scale != !b.group_scale)
    return false;
  auto same = [](const void* x, const void* y, size_t n) { return x == y || std::memcmp(x, y, n) == 0; };
  const size_t data_bytes = a.dtype == DType::I4 ? static_cast<size_t>(a.rows * a.packed_row_bytes()) : a.nbytes();
  if (!same(a.data, b.data, data_bytes)) return false;
  if (a.scale_inv && !same(a.scale_inv, b.scale_inv, static_cast<size_t>((a.rows + 127) / 128 * a.scale_cols()) * 4))
    return false;
  return !a.group_scale ||
         same(a.group_scale, b.group_scale, static_cast<size_t>(a.rows * a.group_cols()) * dtype_size(a.group_scale_dtype));
}

template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}
}  // namespace

Model::Model(const std::string& dir, const ModelOptions& opt)
    : files_(open_model_files(dir)), w_(bind_weights(files_.config, *files_.checkpoint)), rope_(files_.config),
      ws_(std::make_unique<Workspace>()) {
  if (opt.threads > 0) ops::set_num_threads(opt.threads);
  const ModelConfig& c = config();
  ep_rank_ = opt.ep_rank;
  ep_size_ = std::max(1, opt.ep_size);
  if (ep_size_ > 1) {
    if (c.n_routed_experts <= 0) fail("{} ranks: {} has no routed experts to split over them (expert parallelism)", ep_size_, dir);
    if (ep_size_ > c.n_routed_experts)
      fail("{} ranks but {} has only {} routed experts per layer: use at most {} ranks", ep_size_, dir,
           c.n_routed_experts, c.n_routed_experts);
  }
  ctx_ = opt.ctx > 0 ? opt.ctx : std::min<int64_t>(c.max_position_embeddings, 16384);
  if (ctx_ > c.max_position_embeddings)
    fail("--ctx {} exceeds the model's max_position_embeddings {}", ctx_, c.max_position_embeddings);
  const int64_t blocks_per_seq = (ctx_ + KVCache::kBlockSize - 1) / KVCache::kBlockSize + 1;
  // Ranks > 0 run no attention: they keep a one-block cache.
  const int64_t blocks = ep_rank_ > 0 ? 1 : blocks_per_seq * std::max<int64_t>(1, opt.max_seqs);
  kv_ = std::make_unique<KVCache>(c.total_layers(), c.kv_cache_dim(), blocks, opt.kv_dtype);
}

Model::~Model() {
  // Rank 0 ends the other ranks' serve_experts loops; while an exception unwinds, the job ends
  // through dist::abort_all instead, so nothing is sent.
  if (ep_size_ > 1 && ep_rank_ == 0 && std::uncaught_exceptions() == 0) {
    try {
      std::vector<int> rc;
      ep_header(kOpQuit, std::vector<int>(static_cast<size_t>(ep_size_), 0), rc);
    } catch (const std::exception&) {
      // a failed MPI call during shutdown: mpirun ends the job
    }
  }
}

double Model::weight_bytes() const {
  double b = 0;
  for (const auto& t : files_.checkpoint->tensors()) b += static_cast<double>(t.info->nbytes());
  return b;
}

double Model::decode_bytes_per_token() const {
  const ModelConfig& c = config();
  const auto bytes = view_bytes;
  auto mlp_bytes = [&](const MlpWeights& m) { return bytes(m.gate) + bytes(m.up) + bytes(m.down); };
  double total = bytes(w_.lm_head) + bytes(w_.norm) + static_cast<double>(c.hidden_size * dtype_size(w_.embed.dtype));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const LayerWeights& L = w_.layers[static_cast<size_t>(i)];
    const AttentionWeights& a = L.attn;
    total += bytes(L.input_norm) + bytes(L.post_norm);
    total += (c.q_lora_rank > 0 ? bytes(a.q_a) + bytes(a.q_a_norm) + bytes(a.q_b) : bytes(a.q)) + bytes(a.kv_a) +
             bytes(a.kv_a_norm) + bytes(a.kv_b) + bytes(a.o);
    if (!L.moe) {
      total += mlp_bytes(L.mlp);
    } else {
      total += bytes(L.moe_w.router) + (L.moe_w.has_shared ? mlp_bytes(L.moe_w.shared) : 0.0);
      total += static_cast<double>(c.num_experts_per_tok) * mlp_bytes(L.moe_w.experts[0]);
    }
  }
  return total;
}

void Model::check_batch(std::span<SeqInput> batch, bool mtp) const {
  const ModelConfig& c = config();
  for (const SeqInput& s : batch) {
    if (!s.cache) fail("forward: sequence without a cache");
    if (s.tokens.empty()) fail("forward: empty token list");
    if (s.start < 0 || s.start > s.cache->len)
      fail("forward: start position {} leaves a gap after the {} cached positions", s.start, s.cache->len);
    if (s.start + static_cast<int64_t>(s.tokens.size()) > ctx_)
      fail("{} tokens at position {} exceed the context of {} tokens", s.tokens.size(), s.start, ctx_);
    for (int32_t t : s.tokens)
      if (t < 0 || t >= c.vocab_size) fail("token id {} is outside the vocabulary (0..{})", t, c.vocab_size - 1);
    if (mtp && !s.hidden) fail("forward_mtp: hidden states are required");
  }
}

void Model::embed(const WeightView& table, std::span<SeqInput> batch, float* x) const {
  const int64_t H = config().hidden_size;
  const size_t es = dtype_size(table.dtype);
  int64_t t = 0;
  for (const SeqInput& s : batch)
    for (int32_t tok : s.tokens)
      to_f32(table.dtype, static_cast<const uint8_t*>(table.data) + static_cast<size_t>(tok) * H * es, x + (t++) * H,
             static_cast<size_t>(H));
}

// First use of an FP8 weight: one scan for NaN codes, after which the kernels skip their own
// per-row check (about a tenth of decode time). A weight that holds NaN codes keeps the per-row
// check and yields NaN, as transformers does. Every view checked here lives in w_, which this
// Model owns and which is not const, so the const_cast is sound.
void Model::check_nan_once(const WeightView& v) {
  if (v.dtype != DType::F8_E4M3 || v.nan_state != 0) return;
  const_cast<WeightView&>(v).nan_state = static_cast<int8_t>(ops::has_nan_codes(v) ? -1 : 1);
}

void Model::ffn(std::span<const FfnRun> runs) {
  const int64_t H = config().hidden_size;
  for (const FfnRun& r : runs)
    for (const WeightView* v : {&r.m->gate, &r.m->up, &r.m->down}) check_nan_once(*v);
  Workspace& w = *ws_;
  int64_t total = 0;
  for (const FfnRun& r : runs) total += r.rows * r.m->gate.rows;
  float* g = grow(w.eg, total);  // [sum rows x I] gate, then silu(gate) * up
  float* u = grow(w.eu, total);
  std::vector<ops::MatmulJob> jobs;
  int64_t off = 0;
  for (const FfnRun& r : runs) {
    const int64_t I = r.m->gate.rows;
    jobs.push_back({r.x, r.rows, H, r.m->gate, g + off, I});
    jobs.push_back({r.x, r.rows, H, r.m->up, u + off, I});
    off += r.rows * I;
  }
  ops::matmul_batch(jobs);
  ops::silu_mul(g, u, g, total);
  jobs.clear();
  off = 0;
  for (const FfnRun& r : runs) {
    const int64_t I = r.m->gate.rows;
    jobs.push_back({g + off, r.rows, I, r.m->down, r.y, H});
    off += r.rows * I;
  }
  ops::matmul_batch(jobs);
}

void Model::moe(const LayerWeights& L, const float* h, int64_t n, float* out, int layer) {
  const ModelConfig& c = config();
  const int64_t H = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  const MoeWeights& m = L.moe_w;
  Workspace& w = *ws_;
  float* logits = grow(w.router, n * E);
  ops::matmul(h, n, H, m.router, logits, E);
  dump("router_logits", layer, logits, n, E);

  // Routing (spec 5, shared with the trainer): choose with biased scores, weigh with unbiased ones.
  std::vector<std::vector<ExpertRow>> rows(static_cast<size_t>(E));  // per expert, in token order
  Router router(c);
  std::vector<float> score(static_cast<size_t>(E)), wk(static_cast<size_t>(K));
  std::vector<int64_t> chosen(static_cast<size_t>(K));
  for (int64_t t = 0; t < n; ++t) {
    router.route(logits + t * E, m.bias, score.data(), chosen.data(), wk.data());
    for (int64_t k = 0; k < K; ++k) rows[static_cast<size_t>(chosen[k])].push_back({h + t * H, t, wk[k], nullptr});
  }
  if (ep_size_ == 1) return run_experts(m, h, n, rows, out);
  std::vector<int> sc(static_cast<size_t>(ep_size_), 0), rc;
  for (int64_t e = 0; e < E; ++e) sc[static_cast<size_t>(expert_owner(e))] += static_cast<int>(rows[static_cast<size_t>(e)].size());
  sc[static_cast<size_t>(ep_rank_)] = 0;
  ep_header(layer, sc, rc);
  exchange_and_run(m, h, n, rows, sc, rc, out);
}

void Model::run_experts(const MoeWeights& m, const float* h, int64_t n, std::vector<std::vector<ExpertRow>>& rows,
                        float* out) {
  const int64_t H = config().hidden_size, E = config().n_routed_experts;
  Workspace& w = *ws_;
  // The shared expert over all tokens, then each routed expert once over the rows that chose
  // it, so every expert's weights are read once per step. Experts go in groups of at most
  // kGroupRows rows (one expert may exceed it alone): a decode step runs all its experts in two
  // parallel regions, while prefill keeps its workspace bounded.
  constexpr int64_t kGroupRows = 128;
  struct Use {
    const MlpWeights* m;
    const std::vector<ExpertRow>* rows;  // nullptr: every token h [n, H], weight 1
  };
  std::vector<Use> uses;
  if (m.has_shared && n > 0) uses.push_back({&m.shared, nullptr});
  for (int64_t e = 0; e < E; ++e)
    if (!rows[static_cast<size_t>(e)].empty()) uses.push_back({&m.experts[static_cast<size_t>(e)], &rows[static_cast<size_t>(e)]});
  if (n > 0) std::fill(out, out + n * H, 0.0f);
  std::vector<FfnRun> runs;
  for (size_t i = 0; i < uses.size();) {
    int64_t total = 0;
    size_t j = i;
    for (; j < uses.size(); ++j) {
      const int64_t r = uses[j].rows ? static_cast<int64_t>(uses[j].rows->size()) : n;
      if (j > i && total + r > kGroupRows) break;
      total += r;
    }
    float* xin = grow(w.ex, total * H);  // [total, H] gathered inputs, then outputs in w.ey
    float* y = grow(w.ey, total * H);
    runs.clear();
    int64_t row = 0;
    for (size_t k = i; k < j; ++k) {
      const auto* rs = uses[k].rows;
      const int64_t r = rs ? static_cast<int64_t>(rs->size()) : n;
      if (rs)
        for (int64_t t = 0; t < r; ++t)
          std::memcpy(xin + (row + t) * H, (*rs)[static_cast<size_t>(t)].x, static_cast<size_t>(H) * 4);
      runs.push_back({uses[k].m, rs ? xin + row * H : h, r, y + row * H});
      row += r;
    }
    ffn(runs);
    row = 0;
    for (size_t k = i; k < j; ++k) {
      const auto* rs = uses[k].rows;
      const int64_t r = rs ? static_cast<int64_t>(rs->size()) : n;
      for (int64_t t = 0; t < r; ++t) {
        const ExpertRow er = rs ? (*rs)[static_cast<size_t>(t)] : ExpertRow{nullptr, t, 1.0f, nullptr};
        if (er.ret)
          std::memcpy(er.ret, y + (row + t) * H, static_cast<size_t>(H) * 4);
        else
          ops::axpy(er.wt, y + (row + t) * H, out + er.tok * H, H);
      }
      row += r;
    }
    i = j;
  }
}

namespace {
// displacements of consecutive blocks of counts[r] * stride floats
std::vector<int> scaled(const std::vector<int>& counts, int64_t stride, std::vector<int>& displs) {
  std::vector<int> out(counts.size());
  displs.assign(counts.size(), 0);
  int64_t at = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    const int64_t k = counts[r] * stride;
    if (at + k > INT32_MAX) fail("expert all-to-all of {} floats exceeds MPI's int counts: prefill in smaller chunks", at + k);
    out[r] = static_cast<int>(k);
    displs[r] = static_cast<int>(at);
    at += k;
  }
  return out;
}
}  // namespace

int Model::ep_header(int op, const std::vector<int>& sc, std::vector<int>& rc) {
  const size_t P = static_cast<size_t>(ep_size_);
  std::vector<int> send(2 * P), recv(2 * P);
  for (size_t r = 0; r < P; ++r) send[2 * r] = op, send[2 * r + 1] = sc[r];
  // Rank 0 arrives with work, so it never sleeps; the others may wait through an idle server's
  // quiet hours: after 50 ms (far longer than the gap between two MoE layers or two decode
  // steps, which then cost no wake-up latency) they poll with sleeps.
  dist::alltoall_polled(send.data(), recv.data(), 2, ep_rank_ == 0 ? 1e30 : 0.05);
  rc.assign(P, 0);
  for (size_t r = 0; r < P; ++r) rc[r] = recv[2 * r + 1];
  return recv[0];
}

void Model::exchange_and_run(const MoeWeights& m, const float* h, int64_t n, std::vector<std::vector<ExpertRow>>& rows,
                             const std::vector<int>& sc, const std::vector<int>& rc, float* out) {
  const int64_t H = config().hidden_size, E = config().n_routed_experts, S = H + 1;
  // Dispatch records [expert id, x [H]], by destination rank then expert then token (experts are
  // owned in contiguous blocks, so expert order is rank order).
  int64_t n_send = 0, n_recv = 0;
  for (int c : sc) n_send += c;
  for (int c : rc) n_recv += c;
  std::vector<float> send(static_cast<size_t>(n_send * S)), recv(static_cast<size_t>(n_recv * S));
  std::vector<ExpertRow> sent;  // what went out, in send order: where its result is added
  sent.reserve(static_cast<size_t>(n_send));
  for (int64_t e = 0; e < E; ++e) {
    auto& rs = rows[static_cast<size_t>(e)];
    if (expert_owner(e) == ep_rank_) continue;
    for (const ExpertRow& r : rs) {
      float* rec = send.data() + static_cast<int64_t>(sent.size()) * S;
      rec[0] = static_cast<float>(e);  // exact: expert ids are far below 2^24
      std::memcpy(rec + 1, r.x, static_cast<size_t>(H) * 4);
      sent.push_back(r);
    }
    rs.clear();
  }
  if (static_cast<int64_t>(sent.size()) != n_send) fail("expert all-to-all: {} rows packed, {} announced", sent.size(), n_send);
  std::vector<int> sd, rd;
  dist::alltoallv(send.data(), scaled(sc, S, sd), sd, recv.data(), scaled(rc, S, rd), rd);
  // Rows from other ranks join the owned experts' rows after the local tokens.
  std::vector<float> ret(static_cast<size_t>(n_recv * H));
  for (int64_t i = 0; i < n_recv; ++i) {
    const float* rec = recv.data() + i * S;
    const int64_t e = static_cast<int64_t>(rec[0]);
    if (!(rec[0] >= 0) || e >= E || expert_owner(e) != ep_rank_)
      fail("rank {}: received a row for expert {}, which it does not own", ep_rank_, rec[0]);
    rows[static_cast<size_t>(e)].push_back({rec + 1, -1, 1.0f, ret.data() + i * H});
  }
  run_experts(m, h, n, rows, out);
  // Combine: each result row goes back to the rank that sent it, in the order it came.
  std::vector<float> back(static_cast<size_t>(n_send * H));
  dist::alltoallv(ret.data(), scaled(rc, H, rd), rd, back.data(), scaled(sc, H, sd), sd);
  for (size_t i = 0; i < sent.size(); ++i)
    ops::axpy(sent[i].wt, back.data() + static_cast<int64_t>(i) * H, out + sent[i].tok * H, H);
}

void Model::serve_experts() {
  if (ep_size_ == 1 || ep_rank_ == 0) fail("serve_experts: only ranks > 0 of an expert-parallel job serve experts");
  const std::vector<int> none(static_cast<size_t>(ep_size_), 0);
  std::vector<int> rc;
  std::vector<std::vector<ExpertRow>> rows(static_cast<size_t>(config().n_routed_experts));
  for (;;) {
    const int op = ep_header(kOpNone, none, rc);
    if (op == kOpQuit) return;
    if (op == kOpStats) {
      gather_rank_stats();
      continue;
    }
    if (op < 0 || op >= static_cast<int>(w_.layers.size()) || !w_.layers[static_cast<size_t>(op)].moe)
      fail("rank {}: rank 0 asked for MoE layer {}, which this model does not have (are all ranks running the same checkpoint?)",
           ep_rank_, op);
    for (auto& r : rows) r.clear();
    exchange_and_run(w_.layers[static_cast<size_t>(op)].moe_w, nullptr, 0, rows, none, rc, nullptr);
  }
}

std::vector<RankStats> Model::gather_rank_stats() const {
  const RankStats st = rank_stats();
  const std::vector<double> all = dist::gather_to_root({st.resident_weight_bytes, st.planned_weight_bytes, st.bytes_sent});
  std::vector<RankStats> out;
  for (size_t r = 0; r + 2 < all.size(); r += 3) out.push_back({all[r], all[r + 1], all[r + 2]});
  return out;
}

RankStats Model::rank_stats() const {
  RankStats st;
  for (const auto& f : files_.checkpoint->shards()) st.resident_weight_bytes += static_cast<double>(f->resident_bytes());
  const ModelConfig& c = config();
  double others = 0, mine = 0;  // routed experts of other ranks / of this rank
  for (const LayerWeights& L : w_.layers) {
    if (!L.moe) continue;
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      const MlpWeights& x = L.moe_w.experts[static_cast<size_t>(e)];
      const double b = view_bytes(x.gate) + view_bytes(x.up) + view_bytes(x.down);
      (expert_owner(e) == ep_rank_ ? mine : others) += b;
    }
  }
  st.planned_weight_bytes = ep_rank_ == 0 ? weight_bytes() - others : mine;
  st.bytes_sent = static_cast<double>(dist::bytes_sent());
  return st;
}

double Model::ideal_comm_bytes_per_token() const {
  const ModelConfig& c = config();
  int64_t moe_layers = 0;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) moe_layers += w_.layers[static_cast<size_t>(i)].moe;
  return static_cast<double>(moe_layers) * 2.0 * static_cast<double>(c.num_experts_per_tok * c.hidden_size) * 4.0 *
         (ep_size_ - 1) / ep_size_;
}

std::vector<RankStats> Model::expert_parallel_stats() {
  if (ep_rank_ != 0) fail("expert_parallel_stats: rank 0 asks, the other ranks answer in serve_experts");
  std::vector<int> rc;
  if (ep_size_ > 1) ep_header(kOpStats, std::vector<int>(static_cast<size_t>(ep_size_), 0), rc);
  return gather_rank_stats();
}

// kv [n, kv_lora + rope] = kv_a_proj(h) of tokens w.pos/w.seq: normalises the latent part,
// rotates the rope part (in place) and writes each row into the layer's cache. Leaves each
// token's rope table in w.rope_cs [n, rope], for the queries of the same tokens.
void Model::store_latents(int li, float* kv, int64_t n) {
  const ModelConfig& c = config();
  const AttentionWeights& A = w_.layers[static_cast<size_t>(li)].attn;
  const int64_t rd = c.qk_rope_head_dim, kvl = c.kv_lora_rank, kvd = kvl + rd;
  const float eps = static_cast<float>(c.rms_norm_eps);
  Workspace& w = *ws_;
  float* cs_all = grow(w.rope_cs, n * rd);
  for (int64_t t = 0; t < n; ++t) {
    float* row = kv + t * kvd;
    float* cs = cs_all + t * rd;
    ops::rmsnorm(row, 1, kvl, A.kv_a_norm, eps, row);
    rope_.table(w.pos[t], cs);
    Rope::rotate(row + kvl, cs, rd);
    SeqCache* s = w.seq[t];
    const int64_t p = w.pos[t];
    kv_->write(li, s->blocks[static_cast<size_t>(p / KVCache::kBlockSize)], p % KVCache::kBlockSize, row, 1);
  }
}

void Model::attention(int li, const float* h, int64_t n, float* out) {
  const ModelConfig& c = config();
  const AttentionWeights& A = w_.layers[static_cast<size_t>(li)].attn;
  for (const WeightView* v : {&A.q_a, &A.q_b, &A.q, &A.kv_a, &A.kv_b, &A.o}) check_nan_once(*v);
  const int64_t H = c.hidden_size, nh = c.num_attention_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim;
  const int64_t vd = c.v_head_dim, kvl = c.kv_lora_rank, qk = nope + rd, kvd = kvl + rd;
  const float eps = static_cast<float>(c.rms_norm_eps);
  Workspace& w = *ws_;

  float* q = grow(w.q, n * nh * qk);  // [n, nh, nope+rope]
  float* kv = grow(w.kv, n * kvd);     // [n, kv_lora + rope]
  if (c.q_lora_rank > 0) {
    const int64_t ql = c.q_lora_rank;
    float* qa = grow(w.qa, n * ql);
    const ops::MatmulJob down[] = {{h, n, H, A.q_a, qa, ql}, {h, n, H, A.kv_a, kv, kvd}};  // both read h
    ops::matmul_batch(down);
    ops::rmsnorm(qa, n, ql, A.q_a_norm, eps, qa);
    ops::matmul(qa, n, ql, A.q_b, q, nh * qk);
  } else {
    const ops::MatmulJob proj[] = {{h, n, H, A.q, q, nh * qk}, {h, n, H, A.kv_a, kv, kvd}};
    ops::matmul_batch(proj);
  }
  store_latents(li, kv, n);
  for (int64_t t = 0; t < n; ++t)  // the tables store_latents made for the same positions
    for (int64_t hd = 0; hd < nh; ++hd) Rope::rotate(q + (t * nh + hd) * qk + nope, w.rope_cs.data() + t * rd, rd);
  dump("q", li, q, n, nh * qk);
  dump("kv_latent", li, kv, n, kvd);

  // Absorb W_uk into q: q_lat[t, h] = q_nope[t, h] . W_uk_h  [n, nh, kv_lora]
  // Heads run in parallel, each head's small matmul on one thread (nested regions are serial):
  // one parallel region instead of one per head.
  float* q_lat = grow(w.q_lat, n * nh * kvl);
  ops::parallel_for(ops::num_threads(), nh, [&](int64_t hd) {
    ops::matmul_t(q + hd * qk, n, nh * qk, A.kv_b.slice_rows(hd * (nope + vd), nope), q_lat + hd * kvl, nh * kvl);
  });

  // Scores over the latent cache, softmax, and the latent-weighted sum [n, nh, kv_lora], as
  // matmuls over the cache's blocks: a block's 64 latent rows [64, kv_lora + rope] are the
  // "weights" (F32 or BF16, the cache's dtype) and up to kQ query rows [q_lat | q_rope] of one
  // sequence the "tokens", so each cached row is read once for all of a step's heads and tokens
  // of that sequence (decode: the GEMV; prefill: the GEMM). Work items are (sequence, kQ rows).
  constexpr int64_t kQ = 8, B = KVCache::kBlockSize;
  float* qcat = grow(w.qcat, n * nh * kvd);  // [n, nh, kv_lora + rope]
  for (int64_t r = 0; r < n * nh; ++r) {
    std::copy_n(q_lat + r * kvl, kvl, qcat + r * kvd);
    std::copy_n(q + r * qk + nope, rd, qcat + r * kvd + kvl);
  }
  struct Item {
    int64_t r0, r1;  // query rows [r0, r1) of qcat: token r / nh, head r % nh
  };
  std::vector<Item> items;
  for (int64_t t0 = 0; t0 < n;) {
    int64_t t1 = t0 + 1;
    while (t1 < n && w.seq[t1] == w.seq[t0]) ++t1;
    for (int64_t r = t0 * nh; r < t1 * nh; r += kQ) items.push_back({r, std::min(r + kQ, t1 * nh)});
    t0 = t1;
  }
  float* o_lat = grow(w.o_lat, n * nh * kvl);
  const float scale = static_cast<float>(c.softmax_scale());
  const int nthreads = ops::num_threads();
  const int64_t ldsc = (ctx_ + B - 1) / B * B;
  float* scores_all = grow(w.scores, static_cast<int64_t>(nthreads) * (kQ * ldsc + kQ * kvd));
  const DType cdt = kv_->dtype();
  ops::parallel_for(nthreads, static_cast<int64_t>(items.size()), [&](int64_t ii) {
    const int64_t r0 = items[static_cast<size_t>(ii)].r0, nq = items[static_cast<size_t>(ii)].r1 - r0;
    float* sc = scores_all + static_cast<int64_t>(omp_get_thread_num()) * (kQ * ldsc + kQ * kvd);  // [kQ, ldsc]
    float* part = sc + kQ * ldsc;                                                                    // [kQ, kvd]
    const SeqCache* s = w.seq[r0 / nh];
    const int64_t P = w.pos[(r0 + nq - 1) / nh] + 1;  // the last row's token sees the most
    auto block = [&](int64_t b) {
      WeightView v;
      v.data = kv_->row(li, s->blocks[static_cast<size_t>(b)], 0);
      v.dtype = cdt;
      v.rows = std::min(B, P - b * B);
      v.cols = kvd;
      return v;
    };
    for (int64_t b = 0; b * B < P; ++b) ops::matmul(qcat + r0 * kvd, nq, kvd, block(b), sc + b * B, ldsc);
    for (int64_t i = 0; i < nq; ++i) {  // each row's own causal length; later positions weigh 0
      float* row = sc + i * ldsc;
      const int64_t Pi = w.pos[(r0 + i) / nh] + 1;
      for (int64_t j = 0; j < Pi; ++j) row[j] *= scale;
      ops::softmax(row, Pi);
      std::fill(row + Pi, row + P, 0.0f);
    }
    for (int64_t i = 0; i < nq; ++i) std::fill_n(o_lat + (r0 + i) * kvl, kvl, 0.0f);
    for (int64_t b = 0; b * B < P; ++b) {
      ops::matmul_t(sc + b * B, nq, ldsc, block(b), part, kvd);
      for (int64_t i = 0; i < nq; ++i) ops::add(o_lat + (r0 + i) * kvl, part + i * kvd, kvl);
    }
  }, true);
  // Up-project with W_uv per head, then o_proj.
  float* ov = grow(w.ov, n * nh * vd);
  ops::parallel_for(ops::num_threads(), nh, [&](int64_t hd) {
    ops::matmul(o_lat + hd * kvl, n, nh * kvl, A.kv_b.slice_rows(hd * (nope + vd) + nope, vd), ov + hd * vd, nh * vd);
  });
  ops::matmul(ov, n, nh * vd, A.o, out, H);
}

void Model::layer_forward(int li, float* x, int64_t n) {
  const ModelConfig& c = config();
  const LayerWeights& L = w_.layers[static_cast<size_t>(li)];
  const int64_t H = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  Workspace& w = *ws_;
  float* h = grow(w.h, n * H);
  float* o = grow(w.tmp, n * H);
  ops::rmsnorm(x, n, H, L.input_norm, eps, h);
  dump("attn_norm", li, h, n, H);
  attention(li, h, n, o);
  dump("attn_out", li, o, n, H);
  ops::add(x, o, n * H);
  ops::rmsnorm(x, n, H, L.post_norm, eps, h);
  dump("ffn_norm", li, h, n, H);
  if (L.moe) {
    moe(L, h, n, o, li);
  } else {
    const FfnRun run{&L.mlp, h, n, o};
    ffn({&run, 1});
  }
  dump("ffn_out", li, o, n, H);
  ops::add(x, o, n * H);
  dump("residual", li, x, n, H);
}

void Model::head(const WeightView& norm, const WeightView& head, std::span<SeqInput> batch, float* x, int64_t n,
                 ForwardOutput& out, bool want_hidden, int64_t vocab_rows) {
  const ModelConfig& c = config();
  const int64_t H = c.hidden_size;
  const int64_t V = vocab_rows > 0 ? std::min(vocab_rows, c.vocab_size) : c.vocab_size;
  check_nan_once(head);
  ops::rmsnorm(x, n, H, norm, static_cast<float>(c.rms_norm_eps), x);
  dump("final_norm", -1, x, n, H);
  if (want_hidden) out.hidden.assign(x, x + n * H);
  // Gather the rows that need logits, then one matmul over the head.
  std::vector<int64_t> rows;
  int64_t t = 0;
  for (const SeqInput& s : batch) {
    const int64_t k = static_cast<int64_t>(s.tokens.size());
    for (int64_t i = s.all_logits ? 0 : k - 1; i < k; ++i) rows.push_back(t + i);
    t += k;
  }
  float* g = grow(ws_->h, static_cast<int64_t>(rows.size()) * H);
  for (size_t r = 0; r < rows.size(); ++r) std::memcpy(g + r * H, x + rows[r] * H, static_cast<size_t>(H) * 4);
  out.rows = static_cast<int64_t>(rows.size());
  out.logits.resize(static_cast<size_t>(out.rows * V));
  ops::matmul(g, out.rows, H, head.slice_rows(0, V), out.logits.data(), V);
  dump("logits", -1, out.logits.data(), out.rows, V);
}

int64_t Model::place_batch(std::span<SeqInput> batch) {
  Workspace& w = *ws_;
  w.pos.clear();
  w.seq.clear();
  for (SeqInput& s : batch) {
    const int64_t k = static_cast<int64_t>(s.tokens.size());
    reserve_positions(*kv_, *s.cache, s.start, s.start + k);
    for (int64_t i = 0; i < k; ++i) {
      w.pos.push_back(s.start + i);
      w.seq.push_back(s.cache);
    }
  }
  return static_cast<int64_t>(w.pos.size());
}

void Model::forward(std::span<SeqInput> batch, ForwardOutput& out, bool want_hidden) {
  check_batch(batch, false);
  const ModelConfig& c = config();
  const int64_t H = c.hidden_size;
  Workspace& w = *ws_;
  const int64_t n = place_batch(batch);
  float* x = grow(w.x, n * H);
  embed(w_.embed, batch, x);
  dump("embed", -1, x, n, H);
  for (int64_t li = 0; li < c.num_hidden_layers; ++li) layer_forward(static_cast<int>(li), x, n);
  for (SeqInput& s : batch) s.cache->len = s.start + static_cast<int64_t>(s.tokens.size());
  head(w_.norm, w_.lm_head, batch, x, n, out, want_hidden);
}

void Model::share_mtp_copies_once() {
  if (mtp_checked_) return;
  mtp_checked_ = true;
  for (size_t li = static_cast<size_t>(config().num_hidden_layers); li < w_.layers.size(); ++li) {
    MtpWeights& M = w_.layers[li].mtp;
    if (same_weight(M.head, w_.lm_head)) M.head = w_.lm_head;
  }
}

void Model::forward_mtp(std::span<SeqInput> batch, ForwardOutput& out, int64_t vocab_rows, bool draft) {
  if (!has_mtp()) fail("this checkpoint has no MTP module (num_nextn_predict_layers is 0)");
  check_batch(batch, true);
  share_mtp_copies_once();
  const ModelConfig& c = config();
  const int64_t H = c.hidden_size;
  const int li = static_cast<int>(c.num_hidden_layers);
  const MtpWeights& M = w_.layers[static_cast<size_t>(li)].mtp;
  check_nan_once(M.eh_proj);
  const float eps = static_cast<float>(c.rms_norm_eps);
  Workspace& w = *ws_;
  // The MTP layer shares the sequence's block table; its own layer slot holds its latents.
  const int64_t n = place_batch(batch);
  // z = eh_proj([enorm(emb(t_{i+1})); hnorm(h_i)])  [n, 2H] -> [n, H]
  float* cat = grow(w.mtp_cat, n * 2 * H);
  float* e = grow(w.tmp, n * H);
  embed(M.embed, batch, e);
  int64_t t = 0;
  for (const SeqInput& s : batch)
    for (size_t i = 0; i < s.tokens.size(); ++i, ++t) {
      ops::rmsnorm(e + t * H, 1, H, M.enorm, eps, cat + t * 2 * H);
      ops::rmsnorm(s.hidden + static_cast<int64_t>(i) * H, 1, H, M.hnorm, eps, cat + t * 2 * H + H);
    }
  float* x = grow(w.x, n * H);
  ops::matmul(cat, n, 2 * H, M.eh_proj, x, H);
  dump("mtp_z", li, x, n, H);
  const bool some_all = std::any_of(batch.begin(), batch.end(), [](const SeqInput& s) { return s.all_logits; });
  const int64_t m = draft ? static_cast<int64_t>(batch.size()) : 0;  // rows that run the layer
  if (draft && (some_all || dump_ || m == n)) {
    layer_forward(li, x, n);
    head(M.head_norm, M.head, batch, x, n, out, false, vocab_rows);
    return;
  }
  // Only a sequence's last position yields a draft; its earlier positions (the prompt, or the
  // token before an accepted draft) are needed only as cache latents for later attention, so
  // they go through input_norm and kv_a_proj alone [n - m rows], and the layer and head run on
  // the last positions [m rows]. Same latents, same draft. Without a draft every position is
  // such a one.
  const LayerWeights& L = w_.layers[static_cast<size_t>(li)];
  const int64_t kvd = c.kv_lora_rank + c.qk_rope_head_dim;
  std::vector<int64_t> pos_all = w.pos;
  std::vector<SeqCache*> seq_all = w.seq;
  std::vector<SeqInput> last(batch.begin(), batch.end());
  float* h = grow(w.h, (n - m) * H);
  w.pos.clear();
  w.seq.clear();
  int64_t r = 0;
  t = 0;
  for (SeqInput& s : last) {
    const int64_t k = static_cast<int64_t>(s.tokens.size());
    for (int64_t i = 0; i + (draft ? 1 : 0) < k; ++i, ++r) {
      std::copy_n(x + (t + i) * H, H, h + r * H);
      w.pos.push_back(pos_all[static_cast<size_t>(t + i)]);
      w.seq.push_back(seq_all[static_cast<size_t>(t + i)]);
    }
    t += k;
    s.start += k - 1;
    s.tokens = s.tokens.subspan(static_cast<size_t>(k - 1));
  }
  ops::rmsnorm(h, n - m, H, L.input_norm, eps, h);
  check_nan_once(L.attn.kv_a);
  float* kv = grow(w.kv, (n - m) * kvd);
  ops::matmul(h, n - m, H, L.attn.kv_a, kv, kvd);
  store_latents(li, kv, n - m);
  if (!draft) return;
  w.pos.clear();
  w.seq.clear();
  t = 0;
  for (int64_t j = 0; j < m; ++j) {  // compact the last rows to the front of x
    t += static_cast<int64_t>(batch[static_cast<size_t>(j)].tokens.size());
    std::copy_n(x + (t - 1) * H, H, x + j * H);
    w.pos.push_back(pos_all[static_cast<size_t>(t - 1)]);
    w.seq.push_back(seq_all[static_cast<size_t>(t - 1)]);
  }
  layer_forward(li, x, m);
  head(M.head_norm, M.head, last, x, m, out, false, vocab_rows);
}

}  // namespace dsv3
