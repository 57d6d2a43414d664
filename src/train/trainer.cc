#include "train/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "core/log.h"
#include "core/random.h"
#include "data/token_data.h"
#include "dist/comm.h"
#include "io/checkpoint.h"
#include "model/weight_table.h"
#include "ops/lowp.h"
#include "ops/ops.h"
#include "train/checkpoint_io.h"
#include "train/graph.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

// Warmup (linear from lr/warmup), constant, then cosine to min_lr, then min_lr (V3's shape).
double lr_at(const TrainOptions& o, int64_t step) {
  const double min_lr = o.min_lr < 0 ? o.lr / 10 : o.min_lr;
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  if (o.decay_start < 0 || step < o.decay_start) return o.lr;
  const int64_t len = o.decay_steps > 0 ? o.decay_steps : std::max<int64_t>(1, o.steps - o.decay_start);
  const double t = std::min(1.0, static_cast<double>(step - o.decay_start) / static_cast<double>(len));
  return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * t));
}

// Order of the training sequences: a seeded permutation per epoch, so sample k of the run is a
// pure function of (seed, k) and a resumed run reads exactly what the straight run would.
class Sampler {
 public:
  Sampler(int64_t n, uint64_t seed, bool shuffle) : n_(n), seed_(seed), shuffle_(shuffle) {}
  int64_t at(int64_t k) {
    const int64_t epoch = k / n_;
    if (!shuffle_) return k % n_;
    if (epoch != epoch_) {
      perm_.resize(static_cast<size_t>(n_));
      std::iota(perm_.begin(), perm_.end(), 0);
      uint64_t s = splitmix64(seed_ ^ (0x5851f42d4c957f2dull * static_cast<uint64_t>(epoch + 1)));
      for (int64_t i = n_ - 1; i > 0; --i) {
        s = splitmix64(s);
        std::swap(perm_[i], perm_[s % static_cast<uint64_t>(i + 1)]);
      }
      epoch_ = epoch;
    }
    return perm_[k % n_];
  }

 private:
  int64_t n_;
  uint64_t seed_;
  bool shuffle_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

// The slice [lo, hi) of the flat parameters this process updates: all of them, or its ZeRO-1
// shard. g (the gradient) and the AdamW moments are indexed from lo.
struct Shard {
  int64_t lo = 0, hi = 0;
  const float* g = nullptr;
};

// Sum of squared gradients of the trainable tensors inside the shard.
double grad_sumsq(const Params& p, const Shard& sh) {
  double s = 0;
  for (const ParamTensor& t : p.tensors()) {
    if (!t.trainable) continue;
    const int64_t a = std::max(t.offset, sh.lo), b = std::min(t.offset + t.numel, sh.hi);
    double ts = 0;
    for (int64_t j = a; j < b; ++j) ts += static_cast<double>(sh.g[j - sh.lo]) * sh.g[j - sh.lo];
    s += ts;
  }
  return s;
}

void optimizer_step(const TrainOptions& o, Params& p, MomentState& mom, int64_t t, double lr, float gscale,
                    const Shard& sh) {
  const bool adam = o.optimizer == "adamw", bf = mom.dtype == "bf16";
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(t)), bc2 = 1 - std::pow(o.beta2, static_cast<double>(t));
  const float b1 = static_cast<float>(o.beta1), b2 = static_cast<float>(o.beta2);
  for (const ParamTensor& pt : p.tensors()) {
    const int64_t a = std::max(pt.offset, sh.lo), b = std::min(pt.offset + pt.numel, sh.hi);
    if (!pt.trainable || a >= b) continue;
    float* w = p.data() + a;                 // [b - a] of this tensor inside the shard
    const float* g = sh.g + (a - sh.lo);
    const int64_t n = b - a, m0 = a - sh.lo;  // moments of element i: m0 + i
    const float decay = pt.decay ? static_cast<float>(1.0 - lr * o.weight_decay) : 1.0f;
    const float flr = static_cast<float>(lr);
    if (!adam) {
#pragma omp parallel for schedule(static) num_threads(ops::num_threads())
      for (int64_t i = 0; i < n; ++i) w[i] = w[i] * decay - flr * (g[i] * gscale);
      continue;
    }
    const float step = static_cast<float>(lr / bc1), sq = static_cast<float>(1.0 / std::sqrt(bc2));
    const float eps = static_cast<float>(o.adam_eps);
#pragma omp parallel for schedule(static) num_threads(ops::num_threads())
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = m0 + i;
      const float gi = g[i] * gscale;
      float m = bf ? bf16_to_f32(mom.mb[j]) : mom.m[j];
      float v = bf ? bf16_to_f32(mom.vb[j]) : mom.v[j];
      m = b1 * m + (1 - b1) * gi;
      v = b2 * v + (1 - b2) * gi * gi;
      if (bf) {
        mom.mb[j] = f32_to_bf16(m);
        mom.vb[j] = f32_to_bf16(v);
      } else {
        mom.m[j] = m;
        mom.v[j] = v;
      }
      // PyTorch AdamW: decoupled decay first, then the bias-corrected Adam step.
      w[i] = w[i] * decay - step * m / (std::sqrt(v) * sq + eps);
    }
  }
}

// Auxiliary-loss-free balancing (spec 9): b_i += gamma * sign(mean load - load_i) per MoE layer
// from first_layer on (the MTP layers only when the main model is frozen).
void update_bias(Params& p, const StepStats& st, double gamma, int first_layer) {
  if (gamma == 0) return;
  for (size_t l = 0; l < st.loads.size(); ++l) {
    if (st.moe_layer_index[l] < first_layer) continue;
    const MoeWeights& m = p.weights().layers[static_cast<size_t>(st.moe_layer_index[l])].moe_w;
    if (!m.bias) continue;
    const auto& load = st.loads[l];
    const double mean = std::accumulate(load.begin(), load.end(), 0.0) / static_cast<double>(load.size());
    float* b = const_cast<float*>(m.bias);
    for (size_t e = 0; e < load.size(); ++e) {
      const double d = mean - static_cast<double>(load[e]);
      b[e] += static_cast<float>(gamma * static_cast<double>((d > 0) - (d < 0)));
    }
  }
}

std::vector<double> max_vio(const StepStats& st) {
  std::vector<double> v;
  for (const auto& load : st.loads) {
    const double mean = std::accumulate(load.begin(), load.end(), 0.0) / static_cast<double>(load.size());
    const double mx = static_cast<double>(*std::max_element(load.begin(), load.end()));
    v.push_back(mean > 0 ? mx / mean - 1 : 0);
  }
  return v;
}

// Data parallelism under mpirun: each rank ran its share of the global batch, so the step's sums
// and counts add up over the ranks; the balance loss is a mean over sequences, so its sum is
// divided by the ranks, as the gradients are (see run_training).
void reduce_stats(StepStats& st) {
  const int K = dist::size();
  if (K == 1) return;
  std::vector<double> v{st.main_sum, static_cast<double>(st.main_count), st.balance};
  for (size_t k = 0; k < st.mtp_sum.size(); ++k)
    v.push_back(st.mtp_sum[k]), v.push_back(static_cast<double>(st.mtp_count[k])), v.push_back(static_cast<double>(st.mtp_agree[k]));
  for (const auto& load : st.loads) v.insert(v.end(), load.begin(), load.end());
  dist::allreduce_sum(v.data(), static_cast<int64_t>(v.size()));
  size_t i = 0;
  st.main_sum = v[i++];
  st.main_count = static_cast<int64_t>(v[i++]);
  st.balance = v[i++] / K;
  for (size_t k = 0; k < st.mtp_sum.size(); ++k)
    st.mtp_sum[k] = v[i++], st.mtp_count[k] = static_cast<int64_t>(v[i++]), st.mtp_agree[k] = static_cast<int64_t>(v[i++]);
  for (auto& load : st.loads)
    for (auto& x : load) x = static_cast<int64_t>(v[i++]);
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, t / 60 % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

void check_options(const TrainOptions& o) {
  if (o.config_path.empty() == o.init_dir.empty() && !o.resume)
    fail("give exactly one of --config (train from scratch) or --init (start from a checkpoint)");
  if (o.data_dir.empty()) fail("--data is required (a directory made by `dsv3 data`)");
  if (o.out_dir.empty()) fail("--out is required");
  if (o.steps < 1) fail("--steps must be at least 1");
  if (o.batch < 1) fail("--batch must be at least 1");
  if (o.zero1 && !o.dump_grads.empty()) fail("--dump-grads needs the whole gradient; run it without --zero1");
  if (o.batch % dist::size() != 0)
    fail("--batch {} is the global batch and must be a multiple of the {} ranks", o.batch, dist::size());
  if (o.seq_len < 2) fail("--seq-len must be at least 2");
  if (!(o.lr >= 0)) fail("--lr must be >= 0");
  if (o.optimizer != "adamw" && o.optimizer != "sgd") fail("--optimizer must be adamw or sgd (got '{}')", o.optimizer);
  if (o.save_dtype != "f32" && o.save_dtype != "bf16" && o.save_dtype != "fp8")
    fail("--save-dtype must be f32, bf16 or fp8 (got '{}')", o.save_dtype);
  ops::parse_gemm_precision(o.precision.c_str());  // names a bad --precision
  if (o.moments != "f32" && o.moments != "bf16") fail("--moments must be f32 or bf16 (got '{}')", o.moments);
  if (o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1) fail("--beta1/--beta2 must be in [0, 1)");
  if (o.clip < 0 || o.weight_decay < 0 || o.warmup < 0 || o.save_every < 0 || o.val_every < 0 || o.val_seqs < 0)
    fail("--clip, --weight-decay, --warmup, --save-every, --val-every and --val-seqs must not be negative");
  if (o.mtp_weight < 0 || o.balance_alpha < 0 || o.bias_update < 0)
    fail("--mtp-weight, --balance-alpha and --bias-update must not be negative");
  if (o.mtp_targets != "data" && o.mtp_targets != "main")
    fail("--mtp-targets must be data or main (got '{}')", o.mtp_targets);
  if (o.mtp_only && !(o.mtp_weight > 0)) fail("--mtp-only trains nothing with --mtp-weight 0");
}

int64_t peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

}  // namespace

int run_training(const TrainOptions& o_in) {
  TrainOptions o = o_in;
  check_options(o);
  if (o.threads > 0) ops::set_num_threads(o.threads);

  // Where the run starts: a resumed checkpoint, a checkpoint to fine-tune, or a fresh init.
  nlohmann::json prev = fs::exists(o.out_dir) ? read_trainer_state(o.out_dir) : nlohmann::json(nullptr);
  if (dist::is_root()) fs::remove_all(o.out_dir + ".partial");  // an interrupted save; OUT itself is whole
  if (!o.resume && fs::exists(o.out_dir) && !fs::is_empty(o.out_dir) && !o.force) {
    if (!prev.is_null())
      fail("{}: holds a checkpoint at step {}; pass --resume to continue it or --force to start over", o.out_dir,
           prev.value("step", 0));
    fail("{}: exists and is not empty; choose a new directory or pass --force", o.out_dir);
  }
  if (o.resume && prev.is_null()) {
    if (o.config_path.empty() && o.init_dir.empty())
      fail("{}: no complete checkpoint to resume (and no --config/--init to start from)", o.out_dir);
    log_info("train: {} has no complete checkpoint yet; starting from the beginning", o.out_dir);
  }
  const bool resuming = o.resume && !prev.is_null();

  ModelConfig cfg;
  if (resuming) cfg = ModelConfig::load(o.out_dir);
  else if (!o.init_dir.empty()) cfg = ModelConfig::load(o.init_dir);
  else cfg = ModelConfig::load(o.config_path);
  cfg.quantization = {};
  if (o.tokenizer_dir.empty()) {
    const std::string src = resuming ? o.out_dir : o.init_dir;
    if (!src.empty() && fs::exists(fs::path(src) / "tokenizer.json")) o.tokenizer_dir = src;
    else if (!o.config_path.empty() && fs::exists(fs::path(o.config_path).parent_path() / "tokenizer.json"))
      o.tokenizer_dir = fs::path(o.config_path).parent_path().string();
  }
  if (resuming) {
    // The resumed run must read the same data in the same order as the straight run.
    for (const char* k : {"batch", "seq_len", "seed"}) {
      const int64_t want = k == std::string("batch") ? o.batch : k == std::string("seq_len") ? o.seq_len : static_cast<int64_t>(o.seed);
      if (prev["options"].value(k, want) != want)
        fail("--resume: {} is {} in the checkpoint in {}, {} now; resume with the same value", k,
             prev["options"].value(k, want), o.out_dir, want);
    }
    if (prev["options"].value("moments", o.moments) != o.moments)
      fail("--resume: --moments was {} in {}", prev["options"].value("moments", o.moments), o.out_dir);
    // Runs from before the option trained the MTP embedding and head apart.
    if (prev["options"].value("share_mtp", false) != o.share_mtp)
      fail("--resume: {} was trained {} --untie-mtp; resume it the same way", o.out_dir,
           o.share_mtp ? "with" : "without");
    if (prev["options"].value("mtp_only", false) != o.mtp_only ||
        prev["options"].value("mtp_targets", std::string("data")) != o.mtp_targets)
      fail("--resume: {} was trained with --mtp-targets {}{}; resume it the same way", o.out_dir,
           prev["options"].value("mtp_targets", std::string("data")),
           prev["options"].value("mtp_only", false) ? " --mtp-only" : "");
  }
  if ((o.mtp_only || o.mtp_targets == "main") && cfg.num_nextn_predict_layers < 1)
    fail("--mtp-only and --mtp-targets main need MTP modules; the model's num_nextn_predict_layers is 0");

  TokenData data = TokenData::open(o.data_dir, cfg.vocab_size);
  const int64_t nseq = data.train->sequences(o.seq_len);
  if (nseq < 1)
    fail("{}: the training split has {} tokens, fewer than one sequence of --seq-len {}", o.data_dir,
         data.train->size(), o.seq_len);
  const int64_t nval = std::min(data.val->sequences(o.seq_len), o.val_seqs > 0 ? o.val_seqs : INT64_MAX);

  Params params(cfg, o.share_mtp);
  if (o.mtp_only) params.freeze_main();
  MomentState mom;
  mom.dtype = o.moments;
  if (o.optimizer == "adamw") {
    if (mom.dtype == "bf16") mom.mb.assign(static_cast<size_t>(params.size()), 0), mom.vb.assign(static_cast<size_t>(params.size()), 0);
    else mom.m.assign(static_cast<size_t>(params.size()), 0.0f), mom.v.assign(static_cast<size_t>(params.size()), 0.0f);
  }
  int64_t step0 = 0;
  if (resuming) {
    load_trainer_checkpoint(o.out_dir, params, mom);
    step0 = prev.value("step", int64_t{0});
    log_info("train: resuming {} at step {}", o.out_dir, step0);
  } else if (!o.init_dir.empty()) {
    ModelFiles mf = open_model_files(o.init_dir);
    params.load(*mf.checkpoint);
  } else {
    params.init_random(o.seed, o.init_std);
  }
  log_info("train: {} parameters ({} trainable), {} train sequences of {} tokens, {} validation sequences, batch {}, {} GEMMs",
           params.size(), params.trainable_count(), nseq, o.seq_len, nval, o.batch, o.precision);
  if (step0 >= o.steps) {
    log_info("train: {} is already at step {} (--steps {}); nothing to do", o.out_dir, step0, o.steps);
    return 0;
  }

  TrainGraph graph(params, ops::parse_gemm_precision(o.precision.c_str()));
  LossWeights lw{o.mtp_weight, o.balance_alpha, o.mtp_targets == "main", o.mtp_only};
  const int bias_from = o.mtp_only ? static_cast<int>(cfg.num_hidden_layers) : 0;
  Sampler sampler(nseq, o.seed, o.shuffle);
  // Under mpirun each rank runs `lb` of the batch's sequences: rank r the r-th share, so K ranks
  // read exactly the sequences one process would and average the same gradients.
  const int K = dist::size(), rank = dist::rank();
  const int64_t lb = o.batch / K;
  if (K > 1) log_info("train: data parallel over {} ranks, {} sequences each per step", K, lb);
  // ZeRO-1 (--zero1): rank r keeps the AdamW moments of one contiguous slice of the flat
  // parameters, gets that slice of the summed gradient by reduce-scatter, updates it, and the
  // slices are all-gathered back into every rank's full copy of the weights.
  const bool zero1 = o.zero1 && K > 1 && o.optimizer == "adamw";
  const int64_t P = params.size(), chunk = (P + K - 1) / K;
  std::vector<int> counts(static_cast<size_t>(K)), displs(static_cast<size_t>(K));
  for (int r = 0; r < K; ++r) {
    displs[static_cast<size_t>(r)] = static_cast<int>(std::min(P, r * chunk));
    counts[static_cast<size_t>(r)] = static_cast<int>(std::min(P, (r + 1) * chunk) - displs[static_cast<size_t>(r)]);
  }
  Shard shard{0, P, params.grad()};
  std::vector<float> gshard;
  if (zero1) {
    shard.lo = displs[static_cast<size_t>(rank)];
    shard.hi = shard.lo + counts[static_cast<size_t>(rank)];
    gshard.resize(static_cast<size_t>(shard.hi - shard.lo));
    shard.g = gshard.data();
    auto slice = [&](auto& v) {
      if (!v.empty()) v = std::decay_t<decltype(v)>(v.begin() + shard.lo, v.begin() + shard.hi);
    };
    slice(mom.m), slice(mom.v), slice(mom.mb), slice(mom.vb);
    log_info("train: ZeRO-1: each rank holds the AdamW moments of {} of the {} parameters", chunk, P);
  }
  std::vector<int32_t> batch(static_cast<size_t>(lb * o.seq_len));
  std::ofstream logf;
  if (!o.log_path.empty() && dist::is_root()) {
    logf.open(o.log_path, std::ios::app);
    if (!logf) fail("{}: cannot open the log file", o.log_path);
  }
  const bool tty = ::isatty(STDERR_FILENO) && log_level() >= LogLevel::kInfo;
  const auto t_start = std::chrono::steady_clock::now();
  double tokens_done = 0;

  auto validate = [&](nlohmann::ordered_json& j) {
    double ms = 0, mt = 0, ma = 0;
    int64_t mc = 0, tc = 0;
    for (int64_t s = 0; s < nval; s += o.batch) {
      const int64_t s0 = s + rank * lb, b = std::min(lb, std::min(nval, s + o.batch) - s0);
      if (b <= 0) continue;
      for (int64_t i = 0; i < b; ++i) data.val->sequence(s0 + i, o.seq_len, batch.data() + i * o.seq_len);
      const StepStats vs = graph.run(batch.data(), b, o.seq_len, lw, false);
      ms += vs.main_sum;
      mc += vs.main_count;
      if (!vs.mtp_sum.empty()) mt += vs.mtp_sum[0], tc += vs.mtp_count[0], ma += static_cast<double>(vs.mtp_agree[0]);
    }
    double sums[5] = {ms, static_cast<double>(mc), mt, static_cast<double>(tc), ma};
    dist::allreduce_sum(sums, 5);
    ms = sums[0], mc = static_cast<int64_t>(sums[1]), mt = sums[2], tc = static_cast<int64_t>(sums[3]), ma = sums[4];
    if (mc > 0) j["val_loss"] = ms / static_cast<double>(mc);
    if (tc > 0) j["val_mtp_loss"] = mt / static_cast<double>(tc), j["val_mtp_agree"] = ma / static_cast<double>(tc);
  };
  auto save = [&](int64_t step) {
    nlohmann::json st;
    st["step"] = step;
    st["format"] = "dsv3-trainer-v1";
    st["data_position"] = step * o.batch;
    st["options"] = {{"batch", o.batch}, {"seq_len", o.seq_len}, {"seed", static_cast<int64_t>(o.seed)},
                     {"optimizer", o.optimizer}, {"moments", o.moments}, {"precision", o.precision}, {"lr", o.lr}, {"steps", o.steps},
                     {"save_dtype", o.save_dtype}, {"share_mtp", o.share_mtp},
                     {"mtp_only", o.mtp_only}, {"mtp_targets", o.mtp_targets}, {"data", fs::absolute(o.data_dir).string()}};
    if (!zero1) return save_checkpoint({o.out_dir, o.save_dtype, o.tokenizer_dir, &params, &mom, st});
    MomentState full;  // the shards' moments, gathered on rank 0 for the checkpoint
    full.dtype = mom.dtype;
    auto gather = [&](const auto& part, auto& whole) {  // the moments in use (f32 or bf16)
      if (part.empty()) return;
      whole.resize(dist::is_root() ? static_cast<size_t>(P) : 0);
      dist::gather_to_root(part.data(), whole.data(), counts, displs);
    };
    gather(mom.m, full.m), gather(mom.v, full.v), gather(mom.mb, full.mb), gather(mom.vb, full.vb);
    if (dist::is_root()) save_checkpoint({o.out_dir, o.save_dtype, o.tokenizer_dir, &params, &full, st});
  };

  for (int64_t step = step0; step < o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < lb; ++i)
      data.train->sequence(sampler.at(step * o.batch + rank * lb + i), o.seq_len, batch.data() + i * o.seq_len);
    params.zero_grad();
    StepStats st = graph.run(batch.data(), lb, o.seq_len, lw, true);
    if (K > 1) {  // each rank's gradient is of its mean loss: the global one is their mean
      if (zero1) {
        dist::reduce_scatter_sum(params.grad(), gshard.data(), counts);
        ops::scale(gshard.data(), 1.0f / static_cast<float>(K), static_cast<int64_t>(gshard.size()));
      } else {
        dist::allreduce_sum(params.grad(), params.size());
        ops::scale(params.grad(), 1.0f / static_cast<float>(K), params.size());
      }
      reduce_stats(st);
    }
    // With --mtp-only the frozen tensors' gradients are zero: the graph writes none into them.
    if (!o.dump_grads.empty() && step == step0 && dist::is_root()) write_f32_tensors(o.dump_grads, params, params.grad());
    double sumsq = grad_sumsq(params, shard);
    if (zero1) dist::allreduce_sum(&sumsq, 1);
    const double gn = std::sqrt(sumsq);
    if (!std::isfinite(st.loss(lw)) || !std::isfinite(gn))
      fail("step {}: the loss or the gradient is not finite (loss {}, grad norm {}); lower --lr or check the data",
           step + 1, st.loss(lw), gn);
    const float gscale = o.clip > 0 && gn > o.clip ? static_cast<float>(o.clip / (gn + 1e-6)) : 1.0f;
    const double lr = lr_at(o, step);
    optimizer_step(o, params, mom, step + 1, lr, gscale, shard);
    if (zero1) dist::allgather(params.data(), counts, displs);
    update_bias(params, st, o.bias_update, bias_from);

    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ntok = static_cast<double>(o.batch * o.seq_len);
    tokens_done += ntok;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const std::vector<double> vio = max_vio(st);
    nlohmann::ordered_json j;
    j["step"] = step + 1;
    j["loss"] = st.loss(lw);
    j["main_loss"] = st.main_loss();
    if (cfg.num_nextn_predict_layers > 0) j["mtp_loss"] = st.mtp_loss(), j["mtp_agree"] = st.mtp_agreement();
    else j["mtp_loss"] = nullptr;  // no MTP module: nothing to plot
    j["balance_loss"] = st.balance;
    j["grad_norm"] = gn;
    j["lr"] = lr;
    j["tokens"] = static_cast<int64_t>((step + 1) * o.batch * o.seq_len);
    j["tok_s"] = ntok / dt;
    j["max_vio"] = vio.empty() ? 0.0 : *std::max_element(vio.begin(), vio.end());
    j["max_vio_layers"] = vio;
    const bool last = step + 1 == o.steps;
    if (nval > 0 && (last || (o.val_every > 0 && (step + 1) % o.val_every == 0))) validate(j);
    if (last || (o.save_every > 0 && (step + 1) % o.save_every == 0)) {
      if (zero1 || dist::is_root()) save(step + 1);  // ZeRO-1: every rank sends its moments
      dist::barrier();  // a rank that goes on to --resume later finds the checkpoint whole
    }
    j["elapsed_s"] = elapsed;
    if (o.json) fmt::print("{}\n", j.dump()), std::fflush(stdout);
    if (logf) logf << j.dump() << "\n" << std::flush;
    const double eta = elapsed / static_cast<double>(step + 1 - step0) * static_cast<double>(o.steps - step - 1);
    const std::string line = fmt::format("step {}/{}  loss {:.4f}  main {:.4f}  mtp {:.4f} (agree {:.1f}%)  lr {:.3g}  {:.0f} tok/s  ETA {}{}",
                                         step + 1, o.steps, st.loss(lw), st.main_loss(), st.mtp_loss(),
                                         100 * st.mtp_agreement(), lr, ntok / dt,
                                         fmt_duration(eta), j.contains("val_loss") ? fmt::format("  val {:.4f}", j["val_loss"].get<double>()) : "");
    if (tty) fmt::print(stderr, "\r{:<126}", line), std::fflush(stderr);
    else if (!o.json && log_level() >= LogLevel::kInfo) fmt::print(stderr, "{}\n", line);
  }
  if (tty) fmt::print(stderr, "\n");
  log_info("train: done, {} steps, {:.0f} tokens in {}, checkpoint in {}, peak RSS {} MB", o.steps - step0, tokens_done,
           fmt_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()), o.out_dir,
           peak_rss_mb());
  return 0;
}

}  // namespace dsv3
