// The forward pass against transformers (tests/data/ref.json and the *_logits_*.f32 rows, see
// /work/shared/fixtures/README.md): next-token logprobs, top-1, greedy continuations and the MTP
// head on the FP8 fixture (YaRN beyond the original length, group-limited routing with bias,
// partial FP8 blocks) and the V2-Lite BF16 fixture; then the batching invariances (at once,
// token by token, chunked, ragged batch, rollback) and bad inputs; and `dsv3 score --json`.
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/init.h"
#include "runtime/model.h"
#include "runtime/routing.h"
#include "runtime/sampler.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;

const std::string kFixtures = DSV3_FIXTURES;
const std::string kData = DSV3_TEST_DATA;

// Tolerances from the issue: next-token logprobs within 0.02 of transformers; top-1 must agree
// where transformers' top-2 margin is at least 0.05; batching changes logits by < 1e-4 relative.
constexpr float kLogprobTol = 0.02f;
constexpr float kMargin = 0.05f;
constexpr float kBatchRelTol = 1e-4f;

const json& ref() {
  static const json j = [] {
    std::ifstream f(kData + "/ref.json");
    return json::parse(f);
  }();
  return j;
}

std::vector<int32_t> ids(const json& a) { return a.get<std::vector<int32_t>>(); }

// Raw float32 [rows, V] written by transformers.
std::vector<float> read_rows(const std::string& name, int64_t V, int64_t rows) {
  std::ifstream f(kData + "/" + name, std::ios::binary);
  EXPECT_TRUE(f.good()) << name;
  std::vector<float> v(static_cast<size_t>(rows * V));
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  EXPECT_EQ(f.gcount(), static_cast<std::streamsize>(v.size() * 4)) << name << ": expected " << rows << " rows";
  return v;
}

// Logits for every position of `toks` in one forward on a fresh sequence. [n, V]
std::vector<float> all_logits(Model& m, const std::vector<int32_t>& toks, std::vector<float>* hidden = nullptr) {
  SeqCache s;
  SeqInput in{&s, toks, 0, true, nullptr};
  ForwardOutput out;
  m.forward(std::span<SeqInput>(&in, 1), out, hidden != nullptr);
  EXPECT_EQ(out.rows, static_cast<int64_t>(toks.size()));
  EXPECT_EQ(s.len, static_cast<int64_t>(toks.size()));
  if (hidden) *hidden = out.hidden;
  free_seq(m.cache(), s);
  return out.logits;
}

// Greedy decoding with the Model alone: prefill, then one token per forward.
std::vector<int32_t> greedy_decode(Model& m, const std::vector<int32_t>& prompt, int n) {
  const int64_t V = m.config().vocab_size;
  SeqCache s;
  ForwardOutput out;
  SeqInput in{&s, prompt, 0, false, nullptr};
  m.forward(std::span<SeqInput>(&in, 1), out);
  std::vector<int32_t> gen;
  for (int i = 0; i < n; ++i) {
    gen.push_back(argmax(out.logits.data(), V));
    if (i + 1 == n) break;
    SeqInput d{&s, std::span<const int32_t>(&gen.back(), 1), static_cast<int64_t>(prompt.size()) + i, false, nullptr};
    m.forward(std::span<SeqInput>(&d, 1), out);
  }
  free_seq(m.cache(), s);
  return gen;
}

// Our continuation equals transformers' until the first divergence, which is allowed only
// where transformers' own top-2 gap was below kMargin (a near tie either side may take).
void expect_greedy_matches(const std::vector<int32_t>& got, const json& case_) {
  const auto want = ids(case_["greedy"]);
  const auto gaps = case_["gaps"].get<std::vector<float>>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t j = 0; j < want.size(); ++j) {
    if (got[j] == want[j]) continue;
    EXPECT_LT(gaps[j], kMargin) << "greedy diverges at step " << j << " (" << got[j] << " vs " << want[j]
                                << ") where transformers' top-2 gap is " << gaps[j];
    return;
  }
}

struct RowStats {
  int compared = 0, top1_checked = 0;
  float max_lp_diff = 0;
};

// Row r of ours/theirs [V] both predict `next`: logprob within kLogprobTol, top-1 agreement
// where their margin allows.
void compare_row(const float* ours, const float* theirs, int64_t V, int32_t next, const std::string& where,
                 RowStats& st, float tol = kLogprobTol) {
  std::vector<float> a, b;
  log_softmax(ours, V, a);
  log_softmax(theirs, V, b);
  const float d = std::fabs(a[static_cast<size_t>(next)] - b[static_cast<size_t>(next)]);
  st.max_lp_diff = std::max(st.max_lp_diff, d);
  ++st.compared;
  EXPECT_LE(d, tol) << where << ": logprob of " << next << " is " << a[static_cast<size_t>(next)]
                            << ", transformers " << b[static_cast<size_t>(next)];
  const auto top = top_logprobs(b, 2);
  if (top[0].second - top[1].second >= kMargin) {
    ++st.top1_checked;
    EXPECT_EQ(argmax(ours, V), top[0].first) << where << ": top-1 differs (margin " << top[0].second - top[1].second << ")";
  }
}

// Reference logits of prompt `k` of `model_name` (rows = prompt length), then the greedy
// continuation both teacher-forced (argmax over prompt+greedy) and freely decoded.
void check_against_transformers(const std::string& model_name, size_t k, const std::string& logits_file,
                                const ModelOptions& opt = {}, float tol = kLogprobTol) {
  Model m(kFixtures + "/" + model_name, opt);
  const int64_t V = m.config().vocab_size;
  const json& c = ref()[model_name][k];
  const auto prompt = ids(c["prompt"]);
  const auto greedy = ids(c["greedy"]);
  const auto gaps = c["gaps"].get<std::vector<float>>();
  const int64_t n = static_cast<int64_t>(prompt.size());
  const auto theirs = read_rows(logits_file, V, n);

  std::vector<int32_t> full = prompt;
  full.insert(full.end(), greedy.begin(), greedy.end());
  const auto ours = all_logits(m, full);
  RowStats st;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t next = full[static_cast<size_t>(i + 1)];
    compare_row(ours.data() + i * V, theirs.data() + i * V, V, next, model_name + " row " + std::to_string(i), st, tol);
  }
  EXPECT_EQ(st.compared, n);
  EXPECT_GT(st.top1_checked, n / 2) << "too few rows with a clear top-1 to mean anything";
  // Teacher-forced greedy: at step j the argmax over prompt+greedy[:j] is greedy[j].
  int forced = 0;
  for (size_t j = 0; j < greedy.size(); ++j) {
    if (gaps[j] < kMargin) continue;
    ++forced;
    EXPECT_EQ(argmax(ours.data() + (n - 1 + static_cast<int64_t>(j)) * V, V), greedy[j]) << "greedy step " << j;
  }
  EXPECT_GE(forced, 20);
  expect_greedy_matches(greedy_decode(m, prompt, static_cast<int>(greedy.size())), c);
  std::printf("%s prompt %zu: %d rows, max |dlogprob| %.2e, top-1 checked on %d, greedy steps forced %d\n",
              model_name.c_str(), k, st.compared, st.max_lp_diff, st.top1_checked, forced);
}

TEST(ModelReference, V3Fp8LongPromptYarn) { check_against_transformers("v3-fp8", 0, "v3-fp8_logits_0.f32"); }
TEST(ModelReference, V3Fp8ShortPrompt) { check_against_transformers("v3-fp8", 1, "v3-fp8_logits_1.f32"); }
TEST(ModelReference, V3Fp8BosOnly) { check_against_transformers("v3-fp8", 2, "v3-fp8_logits_2.f32"); }
TEST(ModelReference, V2LiteBf16) { check_against_transformers("v2lite-bf16", 0, "v2lite-bf16_logits_0.f32"); }
// --kv-dtype bf16: latents rounded to BF16 in the cache. Measured against transformers: max
// |dlogprob| 0.015-0.018 on these prompts (f32 cache: ~1e-5); the bound leaves room for other
// checkpoints, and greedy still follows transformers wherever its top-2 gap is clear.
ModelOptions bf16_kv() {
  ModelOptions o;
  o.kv_dtype = DType::BF16;
  return o;
}
constexpr float kBf16KvTol = 0.03f;
TEST(ModelReference, V3Fp8LongPromptBf16Cache) {
  check_against_transformers("v3-fp8", 0, "v3-fp8_logits_0.f32", bf16_kv(), kBf16KvTol);
}
// --prefill bf16 (AVX512_BF16 only) against transformers' fp32 logits on the 200-token prompt:
// measured mean |dlogprob| 0.05, max 2.06 (far-tail tokens of this random-weight model), top-1
// equal on 184 of the 186 rows with a clear (>= 0.05) margin. Not within the 0.02 acceptance, so
// it stays opt-in; this pins the measured closeness.
TEST(ModelReference, V3Fp8Bf16PrefillIsClose) {
  testing::OpsState keep;
  if (!ops::prefill_bf16_supported()) GTEST_SKIP() << "no AVX512_BF16";
  ops::set_prefill_bf16(true);
  Model m(kFixtures + "/v3-fp8");
  const int64_t V = m.config().vocab_size;
  const auto prompt = ids(ref()["v3-fp8"][0]["prompt"]);
  const int64_t n = static_cast<int64_t>(prompt.size());
  const auto theirs = read_rows("v3-fp8_logits_0.f32", V, n);
  const auto ours = all_logits(m, prompt);
  double sum = 0;
  int clear = 0, agree = 0;
  std::vector<float> a, b;
  for (int64_t i = 0; i + 1 < n; ++i) {
    log_softmax(ours.data() + i * V, V, a);
    log_softmax(theirs.data() + i * V, V, b);
    const size_t next = static_cast<size_t>(prompt[static_cast<size_t>(i + 1)]);
    sum += std::fabs(a[next] - b[next]);
    const auto top = top_logprobs(b, 2);
    if (top[0].second - top[1].second < kMargin) continue;
    ++clear;
    agree += argmax(ours.data() + i * V, V) == top[0].first;
  }
  const double mean = sum / static_cast<double>(n - 1);
  std::printf("bf16 prefill: mean |dlogprob| %.4f, top-1 %d of %d clear rows\n", mean, agree, clear);
  EXPECT_LT(mean, 0.1);
  EXPECT_GT(mean, 1e-4) << "the BF16 path did not run";
  EXPECT_GE(agree, clear * 95 / 100);
}
TEST(ModelReference, V2LiteBf16Cache) {
  check_against_transformers("v2lite-bf16", 0, "v2lite-bf16_logits_0.f32", bf16_kv(), kBf16KvTol);
}

// MTP head over prompt+greedy: argmax against ref mtp_argmax, and (prompt 1) the logits file.
void check_mtp(size_t k) {
  Model m(kFixtures + "/v3-fp8");
  ASSERT_TRUE(m.has_mtp());
  const int64_t V = m.config().vocab_size;
  const json& c = ref()["v3-fp8"][k];
  auto full = ids(c["prompt"]);
  for (int32_t t : ids(c["greedy"])) full.push_back(t);
  const int64_t n = static_cast<int64_t>(full.size());
  const auto want = ids(c["mtp_argmax"]);
  ASSERT_EQ(static_cast<int64_t>(want.size()), n - 1);

  SeqCache s;
  SeqInput in{&s, full, 0, false, nullptr};
  ForwardOutput out;
  m.forward(std::span<SeqInput>(&in, 1), out, true);
  ASSERT_EQ(static_cast<int64_t>(out.hidden.size()), n * m.config().hidden_size);
  const std::vector<float> hidden = out.hidden;
  // MTP position i sees h_i and token i+1, and predicts token i+2.
  SeqInput mi{&s, std::span<const int32_t>(full.data() + 1, static_cast<size_t>(n - 1)), 0, true, hidden.data()};
  ForwardOutput mo;
  m.forward_mtp(std::span<SeqInput>(&mi, 1), mo);
  ASSERT_EQ(mo.rows, n - 1);
  // The fixture's MTP shared_head.head is a byte copy of lm_head (as in V3): from the first MTP
  // step on, the module reads the main head.
  const ModelWeights& W = m.weights();
  const MtpWeights& M = W.layers[static_cast<size_t>(m.config().num_hidden_layers)].mtp;
  EXPECT_EQ(M.head.data, W.lm_head.data);
  int agree = 0;
  for (int64_t i = 0; i < n - 1; ++i) agree += argmax(mo.logits.data() + i * V, V) == want[static_cast<size_t>(i)];
  std::printf("MTP prompt %zu: argmax agrees on %d of %lld positions\n", k, agree, static_cast<long long>(n - 1));
  EXPECT_GE(agree, 0.95 * static_cast<double>(n - 1));

  if (k == 1) {
    const auto theirs = read_rows("v3-fp8_mtp_logits_1.f32", V, n - 1);
    int good = 0;
    float worst = 0;
    std::vector<float> a, b;
    for (int64_t i = 0; i < n - 1; ++i) {
      log_softmax(mo.logits.data() + i * V, V, a);
      log_softmax(theirs.data() + i * V, V, b);
      // The predicted token (i+2, where there is one) and transformers' argmax.
      float d = std::fabs(a[want[i]] - b[want[i]]);
      if (i + 2 < n) d = std::max(d, std::fabs(a[full[i + 2]] - b[full[i + 2]]));
      worst = std::max(worst, d);
      good += d <= kLogprobTol;
    }
    std::printf("MTP logits: %d of %lld rows within %.2f, worst %.3e\n", good, static_cast<long long>(n - 1),
                kLogprobTol, worst);
    EXPECT_GE(good, 0.95 * static_cast<double>(n - 1));
  }
  free_seq(m.cache(), s);
}

// Without all_logits the MTP module runs its layer only on each sequence's last position (the
// earlier ones only store their latents): the drafts' logits must equal those of the full
// layer, in pieces as the engine feeds them (a prompt, then 1 or 2 tokens a step) and with two
// sequences of different piece lengths in one batch.
TEST(ModelReference, MtpLastPositionsMatchTheFullLayer) {
  ModelOptions opt;
  opt.max_seqs = 3;
  Model m(kFixtures + "/v3-fp8", opt);
  const int64_t V = m.config().vocab_size, H = m.config().hidden_size;
  const json& c = ref()["v3-fp8"][0];
  auto full = ids(c["prompt"]);
  for (int32_t t : ids(c["greedy"])) full.push_back(t);
  const int64_t n = static_cast<int64_t>(full.size());
  SeqCache s[3];
  std::vector<float> hidden;
  for (SeqCache& sc : s) {
    SeqInput in{&sc, full, 0, false, nullptr};
    ForwardOutput out;
    m.forward(std::span<SeqInput>(&in, 1), out, true);
    hidden = out.hidden;
  }
  auto piece = [&](SeqCache& sc, int64_t start, int64_t k, bool all) {
    return SeqInput{&sc, std::span<const int32_t>(full.data() + 1 + start, static_cast<size_t>(k)), start, all,
                    hidden.data() + start * H};
  };
  SeqInput all = piece(s[0], 0, n - 1, true);
  ForwardOutput ref_out;
  m.forward_mtp(std::span<SeqInput>(&all, 1), ref_out);
  ASSERT_EQ(ref_out.rows, n - 1);
  auto expect_row = [&](const float* got, int64_t row) {
    const float* want = ref_out.logits.data() + row * V;
    float worst = 0;
    for (int64_t v = 0; v < V; ++v) worst = std::max(worst, std::fabs(got[v] - want[v]));
    EXPECT_LE(worst, 1e-4f) << "position " << row;
    EXPECT_EQ(argmax(got, V), argmax(want, V)) << "position " << row;
  };
  // Sequence 1: pieces of 7, then 2, 1, 2, 1 ...; sequence 2: 3, then 1, 2, 1, 2 ... (together).
  // Every third call wants no draft (the engine above --draft-max-batch): it only stores the
  // latents, and the later drafts must not notice.
  int64_t p1 = 0, p2 = 0, step = 0;
  for (int64_t k1 = 7, k2 = 3; p1 < n - 1 || p2 < n - 1; ++step, k1 = 1 + step % 2, k2 = 2 - step % 2) {
    std::vector<SeqInput> batch;
    std::vector<int64_t> last;
    if (p1 < n - 1) {
      const int64_t k = std::min(k1, n - 1 - p1);
      batch.push_back(piece(s[1], p1, k, false));
      p1 += k;
      last.push_back(p1 - 1);
    }
    if (p2 < n - 1) {
      const int64_t k = std::min(k2, n - 1 - p2);
      batch.push_back(piece(s[2], p2, k, false));
      p2 += k;
      last.push_back(p2 - 1);
    }
    ForwardOutput out;
    const bool draft = step % 3 != 2;
    m.forward_mtp(batch, out, 0, draft);
    if (!draft) {
      EXPECT_EQ(out.rows, 0);
      continue;
    }
    ASSERT_EQ(out.rows, static_cast<int64_t>(batch.size()));
    for (size_t i = 0; i < last.size(); ++i) expect_row(out.logits.data() + static_cast<int64_t>(i) * V, last[i]);
  }
  for (SeqCache& sc : s) free_seq(m.cache(), sc);
}

TEST(ModelReference, MtpLongPrompt) { check_mtp(0); }
TEST(ModelReference, MtpShortPromptAndLogits) { check_mtp(1); }

// A checkpoint whose MTP head differs from lm_head (random init draws each tensor on its own)
// keeps reading its own.
TEST(ModelReference, MtpKeepsAHeadThatDiffers) {
  const std::string dir = ::testing::TempDir() + "/mtp_own_copies";
  std::filesystem::remove_all(dir);
  json j = json::parse(std::ifstream(kData + "/train/fp8-small.json"));
  InitOptions opt;
  opt.seed = 5;
  init_random_checkpoint(ModelConfig::from_json(j), dir, opt);
  Model m(dir);
  ASSERT_TRUE(m.has_mtp());
  SeqCache s;
  std::vector<int32_t> toks{3, 4, 5};
  SeqInput in{&s, toks, 0, false, nullptr};
  ForwardOutput out;
  m.forward(std::span<SeqInput>(&in, 1), out, true);
  const std::vector<float> hidden = out.hidden;
  SeqInput mi{&s, std::span<const int32_t>(toks.data() + 1, 2), 0, true, hidden.data()};
  m.forward_mtp(std::span<SeqInput>(&mi, 1), out);
  const ModelWeights& W = m.weights();
  const MtpWeights& M = W.layers[static_cast<size_t>(m.config().num_hidden_layers)].mtp;
  EXPECT_NE(M.head.data, W.lm_head.data);
  free_seq(m.cache(), s);
  std::filesystem::remove_all(dir);
}

// ---- batching invariances (v3-fp8, prompt 0: 200 tokens over 4 cache blocks, YaRN) ----

void expect_rows_close(const float* got, const float* want, int64_t rows, int64_t V, const std::string& what) {
  for (int64_t r = 0; r < rows; ++r) {
    float mx = 0, d = 0;
    for (int64_t v = 0; v < V; ++v) {
      mx = std::max(mx, std::fabs(want[r * V + v]));
      d = std::max(d, std::fabs(got[r * V + v] - want[r * V + v]));
    }
    ASSERT_LE(d, kBatchRelTol * std::max(mx, 1.0f)) << what << " row " << r << ": max diff " << d << " (max |logit| " << mx << ")";
  }
}

class Batching : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelOptions o;
    o.max_seqs = 4;
    m = std::make_unique<Model>(kFixtures + "/v3-fp8", o);
    V = m->config().vocab_size;
    p0 = ids(ref()["v3-fp8"][0]["prompt"]);
    p1 = ids(ref()["v3-fp8"][1]["prompt"]);
    p2 = ids(ref()["v3-fp8"][2]["prompt"]);
    base0 = all_logits(*m, p0);
  }
  void TearDown() override { EXPECT_EQ(m->cache().free_blocks(), m->cache().num_blocks()) << "blocks leaked"; }
  // Runs toks[from, to) at position `from` on `s`; returns [to-from, V] (or the last row).
  std::vector<float> run(SeqCache& s, const std::vector<int32_t>& toks, int64_t from, int64_t to, bool all = true) {
    SeqInput in{&s, std::span<const int32_t>(toks.data() + from, static_cast<size_t>(to - from)), from, all, nullptr};
    ForwardOutput out;
    m->forward(std::span<SeqInput>(&in, 1), out);
    return out.logits;
  }
  std::unique_ptr<Model> m;
  int64_t V = 0;
  std::vector<int32_t> p0, p1, p2;
  std::vector<float> base0;  // [200, V] at once
};

TEST_F(Batching, TokenByToken) {
  SeqCache s;
  const int64_t n = static_cast<int64_t>(p0.size());
  for (int64_t i = 0; i < n; ++i) {
    const auto row = run(s, p0, i, i + 1);
    expect_rows_close(row.data(), base0.data() + i * V, 1, V, "token by token, position " + std::to_string(i));
  }
  EXPECT_EQ(s.len, n);
  free_seq(m->cache(), s);
}

TEST_F(Batching, ChunksOfSeven) {
  SeqCache s;
  const int64_t n = static_cast<int64_t>(p0.size());
  for (int64_t i = 0; i < n; i += 7) {
    const int64_t e = std::min(n, i + 7);
    const auto rows = run(s, p0, i, e);
    expect_rows_close(rows.data(), base0.data() + i * V, e - i, V, "chunk at " + std::to_string(i));
    // Only the last row when all_logits is off.
  }
  free_seq(m->cache(), s);
  SeqCache t;
  const auto last = run(t, p0, 0, 100, false);
  ASSERT_EQ(static_cast<int64_t>(last.size()), V);
  expect_rows_close(last.data(), base0.data() + 99 * V, 1, V, "last row only");
  free_seq(m->cache(), t);
}

TEST_F(Batching, RaggedBatchWithContinuingSequences) {
  const auto base1 = all_logits(*m, p1);
  const auto base2 = all_logits(*m, p2);
  // A continues an existing cache of 120 tokens; B and C start fresh; D is a fresh prompt that
  // wants only its last row; E continues the 1-token sequence by one decode token.
  SeqCache a, b, c, d, e;
  run(a, p0, 0, 120, false);
  run(e, p0, 0, 1, false);
  std::vector<SeqInput> batch = {
      {&a, std::span<const int32_t>(p0.data() + 120, 80), 120, true, nullptr},
      {&b, p1, 0, true, nullptr},
      {&c, p2, 0, true, nullptr},
      {&d, std::span<const int32_t>(p0.data(), 50), 0, false, nullptr},
      {&e, std::span<const int32_t>(p0.data() + 1, 1), 1, false, nullptr},
  };
  ForwardOutput out;
  m->forward(batch, out);
  ASSERT_EQ(out.rows, 80 + static_cast<int64_t>(p1.size()) + 1 + 1 + 1);
  const float* r = out.logits.data();
  expect_rows_close(r, base0.data() + 120 * V, 80, V, "A (continuing at 120)");
  r += 80 * V;
  expect_rows_close(r, base1.data(), static_cast<int64_t>(p1.size()), V, "B");
  r += static_cast<int64_t>(p1.size()) * V;
  expect_rows_close(r, base2.data(), 1, V, "C");
  r += V;
  expect_rows_close(r, base0.data() + 49 * V, 1, V, "D (last row)");
  r += V;
  expect_rows_close(r, base0.data() + 1 * V, 1, V, "E (decode)");
  EXPECT_EQ(a.len, 200);
  EXPECT_EQ(b.len, static_cast<int64_t>(p1.size()));
  EXPECT_EQ(d.len, 50);
  EXPECT_EQ(e.len, 2);
  for (SeqCache* s : {&a, &b, &c, &d, &e}) free_seq(m->cache(), *s);
}

TEST_F(Batching, RollbackThenReforward) {
  SeqCache s;
  run(s, p0, 0, 150, false);
  // Speculative tokens that will be rejected: 30 wrong tokens over a block boundary.
  std::vector<int32_t> wrong(p0.rbegin(), p0.rbegin() + 30);
  SeqInput w{&s, wrong, 150, false, nullptr};
  ForwardOutput out;
  m->forward(std::span<SeqInput>(&w, 1), out);
  EXPECT_EQ(s.len, 180);
  truncate_seq(m->cache(), s, 150);
  EXPECT_EQ(s.len, 150);
  EXPECT_EQ(s.blocks.size(), 3u);
  const auto rows = run(s, p0, 150, 200);
  expect_rows_close(rows.data(), base0.data() + 150 * V, 50, V, "after rollback");
  // Rolling back into an earlier block and re-running from there.
  truncate_seq(m->cache(), s, 60);
  EXPECT_EQ(s.blocks.size(), 1u);
  const auto again = run(s, p0, 60, 200);
  expect_rows_close(again.data(), base0.data() + 60 * V, 140, V, "after rollback to 60");
  free_seq(m->cache(), s);
}

TEST_F(Batching, SharedPrefixBlocksGiveTheSameLogits) {
  // B reuses A's first two blocks (as the engine's prefix cache does) and continues from 128;
  // copy-on-write keeps A intact.
  SeqCache a;
  run(a, p0, 0, 150, false);
  SeqCache b;
  for (int i = 0; i < 2; ++i) {
    m->cache().retain(a.blocks[static_cast<size_t>(i)]);
    b.blocks.push_back(a.blocks[static_cast<size_t>(i)]);
  }
  b.len = 128;
  const auto rb = run(b, p0, 128, 200);
  expect_rows_close(rb.data(), base0.data() + 128 * V, 72, V, "B on shared prefix");
  // B re-writes positions 100..128 inside the shared block 1: it must get a private copy.
  truncate_seq(m->cache(), b, 100);
  const auto rb2 = run(b, p0, 100, 200);
  expect_rows_close(rb2.data(), base0.data() + 100 * V, 100, V, "B after copy-on-write");
  const auto ra = run(a, p0, 150, 200);
  expect_rows_close(ra.data(), base0.data() + 150 * V, 50, V, "A after B wrote");
  free_seq(m->cache(), a);
  free_seq(m->cache(), b);
}

// ---- group-limited routing: experts of dropped groups are -inf, not 0 ----

// 8 experts in 4 groups, keep 2 groups, top-3. Every score is 0.5 and the biases make every
// choice (score + bias) negative: groups 0 and 1 have the best top-2 sums and are kept. The
// official code (-inf mask) picks 0, 1, 2; transformers' 0.0 fill would pick 4, 5, 6 (dropped
// groups, 0 > any kept choice).
TEST(Routing, DroppedGroupsAreMaskedToMinusInfinity) {
  const ModelConfig c = ModelConfig::from_json(json{{"model_type", "deepseek_v3"},
                                                    {"n_routed_experts", 8},
                                                    {"n_group", 4},
                                                    {"topk_group", 2},
                                                    {"num_experts_per_tok", 3},
                                                    {"topk_method", "noaux_tc"},
                                                    {"scoring_func", "sigmoid"},
                                                    {"norm_topk_prob", true},
                                                    {"routed_scaling_factor", 2.5}});
  Router r(c);
  const std::vector<float> logits(8, 0.0f);
  const std::vector<float> bias = {-0.6f, -0.6f, -0.7f, -0.7f, -0.9f, -0.9f, -0.8f, -0.8f};
  std::vector<float> score(8), weight(3);
  std::vector<int64_t> chosen(3);
  r.route(logits.data(), bias.data(), score.data(), chosen.data(), weight.data());
  EXPECT_EQ(chosen, (std::vector<int64_t>{0, 1, 2}));
  for (float w : weight) EXPECT_FLOAT_EQ(w, 0.5f / 1.5f * 2.5f) << "gate weights from unbiased scores";
  // With positive choices the mask makes no difference: the best groups' experts win.
  const std::vector<float> up = {0.1f, 0.0f, 0.3f, 0.2f, -0.2f, -0.2f, -0.1f, -0.1f};
  r.route(logits.data(), up.data(), score.data(), chosen.data(), weight.data());
  EXPECT_EQ(chosen, (std::vector<int64_t>{2, 3, 0}));
}

// ---- bad inputs: dsv3::Error, never a crash ----

TEST(ModelErrors, BadInputsThrow) {
  ModelOptions o;
  o.ctx = 100;
  Model m(kFixtures + "/v3-fp8", o);
  EXPECT_EQ(m.ctx(), 100);
  const int32_t V = static_cast<int32_t>(m.config().vocab_size);
  ForwardOutput out;
  auto fwd = [&](SeqCache& s, std::vector<int32_t> t, int64_t start) {
    SeqInput in{&s, t, start, false, nullptr};
    m.forward(std::span<SeqInput>(&in, 1), out);
  };
  SeqCache s;
  EXPECT_THROW(fwd(s, {0, V}, 0), Error);
  EXPECT_THROW(fwd(s, {0, -1}, 0), Error);
  EXPECT_THROW(fwd(s, {}, 0), Error);
  EXPECT_THROW(fwd(s, {0, 5}, 3), Error) << "a gap after the cached positions";
  EXPECT_THROW(fwd(s, std::vector<int32_t>(101, 5), 0), Error) << "beyond the context";
  SeqInput nocache{nullptr, std::span<const int32_t>(), 0, false, nullptr};
  EXPECT_THROW(m.forward(std::span<SeqInput>(&nocache, 1), out), Error);
  EXPECT_EQ(s.len, 0);
  EXPECT_TRUE(s.blocks.empty()) << "a rejected batch must not touch the cache";
  fwd(s, {0, 5, 6}, 0);
  EXPECT_EQ(s.len, 3);
  EXPECT_THROW(fwd(s, std::vector<int32_t>(98, 5), 3), Error);
  SeqInput mtp{&s, std::span<const int32_t>(), 0, false, nullptr};
  const int32_t t1[] = {5};
  mtp.tokens = t1;
  EXPECT_THROW(m.forward_mtp(std::span<SeqInput>(&mtp, 1), out), Error) << "MTP without hidden states";
  free_seq(m.cache(), s);

  Model v2(kFixtures + "/v2lite-bf16");
  EXPECT_FALSE(v2.has_mtp());
  std::vector<float> h(static_cast<size_t>(v2.config().hidden_size), 0.0f);
  SeqCache s2;
  SeqInput in2{&s2, t1, 0, false, h.data()};
  EXPECT_THROW(v2.forward_mtp(std::span<SeqInput>(&in2, 1), out), Error);

  ModelOptions big;
  big.ctx = 100000;
  EXPECT_THROW(Model(kFixtures + "/v3-fp8", big), Error);
  EXPECT_THROW(Model(kFixtures + "/does-not-exist"), Error);
}

// ---- dsv3 score --json ----

using dsv3::testing::run_cmd;

std::string join(const std::vector<int32_t>& v) {
  std::string s;
  for (int32_t t : v) s += (s.empty() ? "" : ",") + std::to_string(t);
  return s;
}

TEST(ScoreCli, JsonFormatLogprobsAndMtp) {
  const json& c = ref()["v3-fp8"][1];
  auto full = ids(c["prompt"]);
  for (int32_t t : ids(c["greedy"])) full.push_back(t);
  const int64_t n = static_cast<int64_t>(full.size()), np = static_cast<int64_t>(ids(c["prompt"]).size());
  const int64_t V = 2048;
  int rc = -1;
  const std::string base = std::string(DSV3_BIN) + " score -m " + kFixtures + "/v3-fp8 --prompt-ids " + join(full);
  const std::string text = run_cmd(base + " --top 3 --mtp --json", rc);
  ASSERT_EQ(rc, 0) << text;
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(text);  // keeps the top_logprobs order
  const auto& lps = j["token_logprobs"];
  const auto& tops = j["top_logprobs"];
  const auto& mtp = j["mtp_argmax"];
  ASSERT_EQ(static_cast<int64_t>(lps.size()), n);
  ASSERT_EQ(static_cast<int64_t>(tops.size()), n);
  ASSERT_EQ(static_cast<int64_t>(mtp.size()), n);
  EXPECT_TRUE(lps[0].is_null());
  EXPECT_TRUE(tops[0].is_null());
  EXPECT_TRUE(mtp[n - 1].is_null());
  // Against transformers' logits over the prompt.
  const auto theirs = read_rows("v3-fp8_logits_1.f32", V, np);
  std::vector<float> lsm;
  for (int64_t i = 1; i < np; ++i) {
    log_softmax(theirs.data() + (i - 1) * V, V, lsm);
    EXPECT_NEAR(lps[i].get<float>(), lsm[static_cast<size_t>(full[i])], kLogprobTol) << "token " << i;
  }
  for (int64_t i = 1; i < n; ++i) {
    ASSERT_TRUE(tops[i].is_object());
    ASSERT_EQ(tops[i].size(), 3u);
    float prev = 1.0f;
    for (const auto& [key, lp] : tops[i].items()) {
      ASSERT_EQ(key.rfind("token_id:", 0), 0u) << key;
      const int id = std::stoi(key.substr(9));
      EXPECT_GE(id, 0);
      EXPECT_LT(id, V);
      EXPECT_LE(lp.get<float>(), prev) << "top_logprobs not sorted at " << i;
      EXPECT_LE(lp.get<float>(), 0.0f);
      prev = lp.get<float>();
      if (id == full[i]) {
        EXPECT_NEAR(lp.get<float>(), lps[i].get<float>(), 1e-6);
      }
    }
    EXPECT_GE(tops[i].begin()->get<float>() + 1e-6f, lps[i].get<float>());
  }
  const auto want = ids(c["mtp_argmax"]);
  int agree = 0;
  for (int64_t i = 0; i + 1 < n; ++i) agree += mtp[i].get<int32_t>() == want[i];
  EXPECT_GE(agree, 0.95 * static_cast<double>(n - 1));

  // Chunked prefill in the command gives the same numbers.
  const json k = json::parse(run_cmd(base + " --chunk 5 --json", rc));
  ASSERT_EQ(rc, 0);
  for (int64_t i = 1; i < n; ++i)
    EXPECT_NEAR(k["token_logprobs"][i].get<float>(), lps[i].get<float>(), 1e-4) << i;
  EXPECT_FALSE(k.contains("mtp_argmax"));

  // Bad input: one error line on stderr, non-zero exit, nothing on stdout.
  const std::string bad = run_cmd(std::string(DSV3_BIN) + " score -m " + kFixtures + "/v3-fp8 --prompt-ids 0,5,99999 --json 2>/dev/null", rc);
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(bad.empty()) << bad;
  run_cmd(std::string(DSV3_BIN) + " score -m " + kFixtures + "/v2lite-bf16 --prompt-ids 0,5 --mtp --json 2>/dev/null", rc);
  EXPECT_NE(rc, 0) << "--mtp without an MTP module";
}

}  // namespace
}  // namespace dsv3
