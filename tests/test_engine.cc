// The continuous-batching engine on the FP8 fixture: greedy output against transformers
// (ref.json), concurrent requests equal to each alone, MTP speculative decoding unchanged
// output, stop rules (max_tokens, EOS, stop ids, callbacks), cancel, prompt/output logprobs
// against transformers' logits, the prefix cache, rejected requests, KV cache exhaustion;
// StopStrings; and `dsv3 generate --json`.
#include <gtest/gtest.h>

#include "testing.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "runtime/stop_strings.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kFixtures = DSV3_FIXTURES;
const std::string kData = DSV3_TEST_DATA;
constexpr float kMargin = 0.05f;  // a greedy divergence is allowed where transformers' top-2 gap is below

const json& ref() {
  static const json j = [] {
    std::ifstream f(kData + "/ref.json");
    return json::parse(f);
  }();
  return j;
}
std::vector<int32_t> ids(const json& a) { return a.get<std::vector<int32_t>>(); }
std::vector<int32_t> prompt(size_t k) { return ids(ref()["v3-fp8"][k]["prompt"]); }

void expect_greedy_matches(const std::vector<int32_t>& got, const json& case_, const std::string& what) {
  const auto want = ids(case_["greedy"]);
  const auto gaps = case_["gaps"].get<std::vector<float>>();
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t j = 0; j < want.size(); ++j) {
    if (got[j] == want[j]) continue;
    EXPECT_LT(gaps[j], kMargin) << what << ": diverges at step " << j << " where transformers' gap is " << gaps[j];
    return;
  }
}

struct Result {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprob> lps;
  FinishInfo info;
  bool finished = false;
};

RequestCallbacks collect(Result& r) {
  RequestCallbacks cb;
  cb.on_token = [&r](int32_t t, const TokenLogprob* lp) {
    EXPECT_FALSE(r.finished) << "token after finish";
    r.tokens.push_back(t);
    if (lp) r.lps.push_back(*lp);
    return true;
  };
  cb.on_finish = [&r](const FinishInfo& f) {
    EXPECT_FALSE(r.finished) << "finished twice";
    r.info = f;
    r.finished = true;
  };
  return cb;
}

// Steps until nothing is left; bounded so a stuck engine fails instead of hanging.
void drain(Engine& e) {
  for (int i = 0; i < 5000 && e.step(); ++i) {
  }
  EXPECT_EQ(e.active(), 0u);
}

Result run_alone(Model& m, const std::vector<int32_t>& p, const GenerateOptions& g, EngineOptions eo = {}) {
  Engine e(m, eo);
  Result r;
  e.submit(p, g, collect(r));
  drain(e);
  EXPECT_TRUE(r.finished);
  return r;
}

GenerateOptions greedy(int64_t n, bool spec = false) {
  GenerateOptions g;
  g.max_tokens = n;
  g.ignore_eos = true;
  g.speculative = spec;
  return g;
}

std::unique_ptr<Model> v3(int64_t max_seqs = 8, int64_t ctx = 0, const std::string& dir = kFixtures + "/v3-fp8") {
  ModelOptions o;
  o.max_seqs = max_seqs;
  o.ctx = ctx;
  return std::make_unique<Model>(dir, o);
}

void expect_cache_empty(Model& m) { EXPECT_EQ(m.cache().free_blocks(), m.cache().num_blocks()) << "blocks leaked"; }

TEST(Engine, GreedyMatchesTransformers) {
  auto m = v3();
  for (size_t k = 0; k < 3; ++k) {
    const Result r = run_alone(*m, prompt(k), greedy(32));
    EXPECT_EQ(r.info.reason, "length");
    EXPECT_EQ(r.info.prompt_tokens, static_cast<int64_t>(prompt(k).size()));
    EXPECT_EQ(r.info.completion_tokens, 32);
    expect_greedy_matches(r.tokens, ref()["v3-fp8"][k], "v3-fp8 prompt " + std::to_string(k));
  }
  expect_cache_empty(*m);
  Model v2(kFixtures + "/v2lite-bf16");
  const json& c = ref()["v2lite-bf16"][0];
  expect_greedy_matches(run_alone(v2, ids(c["prompt"]), greedy(32)).tokens, c, "v2lite-bf16");
}

// Drafts and acceptances that MTP speculative decoding must report when the greedy output is
// transformers' and the drafts are transformers' MTP argmax (ref mtp_argmax[p] predicts p+2):
// after a rejection the next draft comes from the next position, after an acceptance from two on.
std::pair<int64_t, int64_t> expected_drafts(const json& c, int64_t generated) {
  auto full = ids(c["prompt"]);
  const int64_t n = static_cast<int64_t>(full.size());
  for (int32_t t : ids(c["greedy"])) full.push_back(t);
  const auto mtp = ids(c["mtp_argmax"]);
  int64_t p = n - 1, emitted = 1, drafted = 0, accepted = 0;  // the first token comes from the prefill
  while (emitted < generated) {
    ++drafted;
    if (mtp[static_cast<size_t>(p)] == full[static_cast<size_t>(p + 2)]) {
      ++accepted;
      emitted += 2;
      p += 2;
    } else {
      emitted += 1;
      p += 1;
    }
  }
  return {drafted, accepted};
}

TEST(Engine, SpeculativeMtpGivesTheSameGreedyOutput) {
  auto m = v3();
  for (size_t k = 0; k < 3; ++k) {
    const json& c = ref()["v3-fp8"][k];
    const Result plain = run_alone(*m, prompt(k), greedy(32));
    const Result spec = run_alone(*m, prompt(k), greedy(32, true));
    EXPECT_EQ(spec.tokens, plain.tokens) << "prompt " << k;
    EXPECT_EQ(spec.info.reason, "length");
    EXPECT_EQ(plain.info.drafted, 0);
    EXPECT_GT(spec.info.drafted, 0);
    EXPECT_LE(spec.info.accepted, spec.info.drafted);
    // Every decode step drafts and emits one token plus one per accepted draft (the last step's
    // second token may be cut by max_tokens); the first token comes from the prefill.
    EXPECT_GE(spec.info.drafted + spec.info.accepted, spec.info.completion_tokens - 1);
    EXPECT_LE(spec.info.drafted + spec.info.accepted, spec.info.completion_tokens);
    if (c.contains("mtp_argmax") && plain.tokens == ids(c["greedy"])) {
      const auto [drafted, accepted] = expected_drafts(c, 32);
      EXPECT_EQ(spec.info.drafted, drafted) << "prompt " << k;
      EXPECT_EQ(spec.info.accepted, accepted) << "prompt " << k;
    }
    std::printf("prompt %zu: drafted %lld accepted %lld\n", k, static_cast<long long>(spec.info.drafted),
                static_cast<long long>(spec.info.accepted));
  }
  expect_cache_empty(*m);
}

// A draft vocabulary of the first D ids: drafts come only from there, the output never changes.
// With D = 1 the only possible draft is id 0, so nothing is accepted unless the model emits it.
TEST(Engine, DraftVocabularyLimitsDraftsNotOutput) {
  auto m = v3();
  const int64_t V = m->config().vocab_size;
  for (int64_t d : {int64_t{1}, V / 3, V + 5}) {
    const Result plain = run_alone(*m, prompt(1), greedy(24));
    GenerateOptions g = greedy(24, true);
    g.draft_vocab = d;
    const Result spec = run_alone(*m, prompt(1), g);
    EXPECT_EQ(spec.tokens, plain.tokens) << "draft vocabulary " << d;
    EXPECT_GT(spec.info.drafted, 0);
    if (d == 1) {
      EXPECT_EQ(spec.info.accepted, std::count(plain.tokens.begin(), plain.tokens.end(), 0));
    }
    if (d > V) {
      GenerateOptions all = greedy(24, true);
      all.draft_vocab = 0;
      EXPECT_EQ(spec.info.accepted, run_alone(*m, prompt(1), all).info.accepted);
    }
  }
  GenerateOptions bad = greedy(4, true);
  bad.draft_vocab = -2;
  EXPECT_THROW(run_alone(*m, prompt(1), bad), Error);
  expect_cache_empty(*m);
}

// The automatic draft vocabulary: the first quarter of the ids (a multiple of 64, at most V),
// until more than 1/16 of at least 16 generated tokens lie past it; explicit counts and 0 as given.
TEST(Engine, AutoDraftVocabularyFallsBackWhenTheOutputLeavesIt) {
  constexpr int64_t A = GenerateOptions::kDraftVocabAuto;
  EXPECT_EQ(auto_draft_vocab(8192), 2048);
  EXPECT_EQ(auto_draft_vocab(129280), 32320);
  EXPECT_EQ(auto_draft_vocab(1000), 256);
  EXPECT_EQ(auto_draft_vocab(100), 64);
  EXPECT_EQ(auto_draft_vocab(10), 10);
  EXPECT_EQ(draft_vocab_rows(A, 8192, 0, 0), 2048);
  EXPECT_EQ(draft_vocab_rows(A, 8192, 15, 15), 2048);  // too few tokens to judge
  EXPECT_EQ(draft_vocab_rows(A, 8192, 16, 1), 2048);   // exactly 1/16
  EXPECT_EQ(draft_vocab_rows(A, 8192, 16, 2), 8192);
  EXPECT_EQ(draft_vocab_rows(A, 8192, 320, 20), 2048);
  EXPECT_EQ(draft_vocab_rows(A, 8192, 320, 21), 8192);
  EXPECT_EQ(draft_vocab_rows(0, 8192, 0, 0), 8192);
  EXPECT_EQ(draft_vocab_rows(100, 8192, 320, 300), 100);
  EXPECT_EQ(draft_vocab_rows(9000, 8192, 0, 0), 8192);
}

// On a model whose greedy output spreads over all ids (random weights, so the fallback to every
// id happens after 16 tokens), the automatic draft vocabulary drafts, and the output is the plain
// one throughout. (When the fallback happens is checked on the rule itself, above.)
TEST(Engine, AutoDraftVocabularyKeepsTheOutput) {
  auto m = v3();
  const Result plain = run_alone(*m, prompt(1), greedy(40));
  GenerateOptions g = greedy(40, true);
  ASSERT_EQ(g.draft_vocab, GenerateOptions::kDraftVocabAuto);
  const Result spec = run_alone(*m, prompt(1), g);
  EXPECT_EQ(spec.tokens, plain.tokens);
  const int64_t D = auto_draft_vocab(m->config().vocab_size);
  const auto past = std::count_if(plain.tokens.begin(), plain.tokens.end(), [&](int32_t t) { return t >= D; });
  EXPECT_GT(past * 16, static_cast<int64_t>(plain.tokens.size())) << "the test needs output past the quarter";
  EXPECT_GT(spec.info.drafted, 0);
  expect_cache_empty(*m);
}

TEST(Engine, ConcurrentRequestsEqualEachAlone) {
  auto m = v3();
  const auto p0 = prompt(0), p1 = prompt(1), p2 = prompt(2);
  std::vector<std::vector<int32_t>> prompts = {
      p0, p1, p2, std::vector<int32_t>(p0.begin(), p0.begin() + 70), std::vector<int32_t>(p0.begin() + 30, p0.begin() + 95),
  };
  std::vector<int32_t> mixed = p1;
  mixed.insert(mixed.end(), p0.begin() + 5, p0.begin() + 40);
  prompts.push_back(mixed);
  std::vector<GenerateOptions> opts;
  for (size_t i = 0; i < prompts.size(); ++i) opts.push_back(greedy(6 + 3 * static_cast<int64_t>(i), i % 2 == 1));
  EngineOptions eo;
  eo.prefill_chunk = 32;  // prefill chunks run beside decodes
  eo.prefix_cache = false;
  std::vector<Result> alone;
  for (size_t i = 0; i < prompts.size(); ++i) alone.push_back(run_alone(*m, prompts[i], opts[i], eo));

  for (int64_t max_batch : {int64_t{8}, int64_t{3}}) {
    eo.max_batch = max_batch;
    Engine e(*m, eo);
    std::vector<Result> together(prompts.size());
    std::vector<int64_t> rid;
    for (size_t i = 0; i < prompts.size(); ++i) rid.push_back(e.submit(prompts[i], opts[i], collect(together[i])));
    EXPECT_EQ(std::set<int64_t>(rid.begin(), rid.end()).size(), prompts.size()) << "ids must be unique";
    EXPECT_EQ(e.active(), prompts.size());
    int64_t widest = 0;
    bool queued = false;
    for (int i = 0; i < 5000 && e.step(); ++i) {
      widest = std::max(widest, e.last_batch_size());
      queued |= e.waiting() > 0;
      EXPECT_LE(e.last_batch_size(), max_batch);
    }
    EXPECT_GT(widest, 1) << "requests never shared a step";
    if (max_batch < static_cast<int64_t>(prompts.size())) {
      EXPECT_TRUE(queued);
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_TRUE(together[i].finished);
      EXPECT_EQ(together[i].tokens, alone[i].tokens) << "request " << i << " with max_batch " << max_batch;
      EXPECT_EQ(together[i].info.reason, "length");
      EXPECT_EQ(static_cast<int64_t>(together[i].tokens.size()), opts[i].max_tokens);
    }
  }
  expect_cache_empty(*m);
}

// EngineOptions::draft_max_batch: MTP drafts only while at most that many sequences run. A short
// and a long speculative request together: the short one never drafts; the long one drafts once
// it runs alone, from an MTP cache kept in step meanwhile; outputs stay the plain greedy ones.
TEST(Engine, DraftsOnlyUpToDraftMaxBatch) {
  auto m = v3();
  const Result plain_a = run_alone(*m, prompt(0), greedy(4)), plain_b = run_alone(*m, prompt(1), greedy(24));
  const Result alone_b = run_alone(*m, prompt(1), greedy(24, true));
  for (int64_t limit : {int64_t{1}, int64_t{0}, int64_t{2}}) {
    EngineOptions eo;
    eo.draft_max_batch = limit;
    Engine e(*m, eo);
    Result a, b;
    e.submit(prompt(0), greedy(4, true), collect(a));
    e.submit(prompt(1), greedy(24, true), collect(b));
    drain(e);
    ASSERT_TRUE(a.finished && b.finished);
    EXPECT_EQ(a.tokens, plain_a.tokens) << "limit " << limit;
    EXPECT_EQ(b.tokens, plain_b.tokens) << "limit " << limit;
    if (limit == 1) {
      EXPECT_EQ(a.info.drafted, 0) << "drafted beside another sequence";
      EXPECT_GT(b.info.drafted, 0) << "did not draft again once alone";
      EXPECT_LT(b.info.drafted, alone_b.info.drafted);
    } else {
      EXPECT_GT(a.info.drafted, 0) << "limit " << limit;
      EXPECT_EQ(b.info.drafted, alone_b.info.drafted) << "limit " << limit;
      EXPECT_EQ(b.info.accepted, alone_b.info.accepted) << "limit " << limit;
    }
  }
  expect_cache_empty(*m);
}

TEST(Engine, MaxTokens) {
  auto m = v3();
  const Result five = run_alone(*m, prompt(1), greedy(5));
  EXPECT_EQ(five.tokens.size(), 5u);
  EXPECT_EQ(five.info.reason, "length");
  EXPECT_EQ(five.info.completion_tokens, 5);
  const Result zero = run_alone(*m, prompt(1), greedy(0));
  EXPECT_TRUE(zero.tokens.empty());
  EXPECT_EQ(zero.info.reason, "length");
  const Result one = run_alone(*m, prompt(1), greedy(1, true));
  EXPECT_EQ(one.tokens.size(), 1u);
  // max_tokens is capped by the context.
  auto small = v3(1, 64);
  const Result capped = run_alone(*small, prompt(1), greedy(1000));
  EXPECT_EQ(capped.tokens.size(), 64u - prompt(1).size());
  EXPECT_EQ(capped.info.reason, "length");
  expect_cache_empty(*small);
}

// A copy of the fixture whose EOS is the 4th greedy token of prompt 1, so greedy decoding
// really meets EOS.
std::string fixture_with_eos(int32_t eos) {
  const fs::path dir = fs::temp_directory_path() / ("dsv3_eos_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& f : fs::directory_iterator(kFixtures + "/v3-fp8")) fs::copy_file(f.path(), dir / f.path().filename());
  fs::permissions(dir / "config.json", fs::perms::owner_read | fs::perms::owner_write);
  json cfg;
  {
    std::ifstream f(dir / "config.json");
    cfg = json::parse(f);
  }
  cfg["eos_token_id"] = eos;
  std::ofstream(dir / "config.json") << cfg.dump(2);
  return dir.string();
}

TEST(Engine, EosStopsUnlessIgnored) {
  const auto want = ids(ref()["v3-fp8"][1]["greedy"]);
  size_t at = 3;
  while (std::find(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(at), want[at]) != want.begin() + static_cast<std::ptrdiff_t>(at)) ++at;
  const std::string dir = fixture_with_eos(want[at]);
  {
    auto m = v3(8, 0, dir);
    ASSERT_EQ(m->config().eos_token_ids, std::vector<int64_t>{want[at]});
    for (bool spec : {false, true}) {
      GenerateOptions g = greedy(32, spec);
      g.ignore_eos = false;
      const Result r = run_alone(*m, prompt(1), g);
      EXPECT_EQ(r.info.reason, "stop") << "speculative " << spec;
      EXPECT_EQ(r.tokens, std::vector<int32_t>(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(at) + 1));
      const Result ign = run_alone(*m, prompt(1), greedy(32, spec));
      EXPECT_EQ(ign.info.reason, "length");
      EXPECT_EQ(ign.tokens.size(), 32u);
    }
  }
  fs::remove_all(dir);
  // Extra stop ids work the same way on the original checkpoint.
  auto m = v3();
  GenerateOptions g = greedy(32);
  g.ignore_eos = false;
  g.stop_ids = {want[at]};
  const Result r = run_alone(*m, prompt(1), g);
  EXPECT_EQ(r.info.reason, "stop");
  EXPECT_EQ(r.tokens.size(), at + 1);
}

TEST(Engine, CallbackFalseStops) {
  auto m = v3();
  Engine e(*m, {});
  Result r;
  RequestCallbacks cb = collect(r);
  cb.on_token = [&r](int32_t t, const TokenLogprob*) {
    r.tokens.push_back(t);
    return r.tokens.size() < 3;
  };
  e.submit(prompt(1), greedy(32, true), cb);
  drain(e);
  EXPECT_EQ(r.info.reason, "stop");
  EXPECT_EQ(r.tokens.size(), 3u);
}

TEST(Engine, Cancel) {
  auto m = v3();
  const Result alone = run_alone(*m, prompt(2), greedy(20));
  EngineOptions eo;
  eo.max_batch = 2;
  Engine e(*m, eo);
  Result a, b, c;
  const int64_t ia = e.submit(prompt(1), greedy(30), collect(a));
  e.submit(prompt(2), greedy(20), collect(b));
  const int64_t ic = e.submit(prompt(0), greedy(20), collect(c));  // waits: max_batch 2
  e.cancel(ic);
  for (int i = 0; i < 4; ++i) e.step();
  EXPECT_TRUE(c.finished);
  EXPECT_EQ(c.info.reason, "cancelled");
  EXPECT_TRUE(c.tokens.empty());
  EXPECT_FALSE(a.finished);
  e.cancel(ia);
  drain(e);
  EXPECT_EQ(a.info.reason, "cancelled");
  EXPECT_GE(a.tokens.size(), 1u);
  EXPECT_LT(a.tokens.size(), 30u);
  EXPECT_EQ(a.info.completion_tokens, static_cast<int64_t>(a.tokens.size()));
  EXPECT_EQ(b.info.reason, "length");
  EXPECT_EQ(b.tokens, alone.tokens);
  e.cancel(12345);  // unknown ids are ignored
  EXPECT_FALSE(e.step());
}

// Log-probabilities against transformers' logits rows and against the model run directly (the
// `score` path: one forward with every row's logits).
TEST(Engine, PromptAndOutputLogprobs) {
  auto m = v3();
  const int64_t V = m->config().vocab_size;
  const auto p = prompt(0);
  const int64_t n = static_cast<int64_t>(p.size());
  std::vector<float> theirs(static_cast<size_t>(n * V));
  std::ifstream(kData + "/v3-fp8_logits_0.f32", std::ios::binary).read(reinterpret_cast<char*>(theirs.data()), n * V * 4);
  SeqCache s;
  SeqInput in{&s, p, 0, true, nullptr};
  ForwardOutput direct;
  m->forward(std::span<SeqInput>(&in, 1), direct);
  free_seq(m->cache(), s);

  EngineOptions eo;
  eo.prefill_chunk = 64;  // the echo spans several prefill chunks
  GenerateOptions g = greedy(4);
  g.prompt_logprobs = true;
  g.logprobs = 5;
  const Result r = run_alone(*m, p, g, eo);
  const auto& pl = r.info.prompt_logprobs;
  ASSERT_EQ(static_cast<int64_t>(pl.size()), n);
  EXPECT_EQ(pl[0].token, -1);
  std::vector<float> a, b;
  for (int64_t i = 1; i < n; ++i) {
    log_softmax(direct.logits.data() + (i - 1) * V, V, a);
    log_softmax(theirs.data() + (i - 1) * V, V, b);
    ASSERT_EQ(pl[i].token, p[i]);
    EXPECT_NEAR(pl[i].logprob, a[p[i]], 1e-4) << "position " << i << " vs score";
    EXPECT_NEAR(pl[i].logprob, b[p[i]], 0.02) << "position " << i << " vs transformers";
    ASSERT_EQ(pl[i].top.size(), 5u);
    for (size_t j = 1; j < 5; ++j) EXPECT_GE(pl[i].top[j - 1].second, pl[i].top[j].second);
    EXPECT_EQ(pl[i].top[0].first, argmax(direct.logits.data() + (i - 1) * V, V));
  }
  // Output logprobs: the chosen (greedy) token is the top one.
  ASSERT_EQ(r.lps.size(), 4u);
  log_softmax(direct.logits.data() + (n - 1) * V, V, a);
  EXPECT_NEAR(r.lps[0].logprob, a[r.tokens[0]], 1e-4);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r.lps[i].token, r.tokens[i]);
    ASSERT_EQ(r.lps[i].top.size(), 5u);
    EXPECT_EQ(r.lps[i].top[0].first, r.tokens[i]);
    EXPECT_FLOAT_EQ(r.lps[i].top[0].second, r.lps[i].logprob);
    for (size_t j = 1; j < 5; ++j) EXPECT_GE(r.lps[i].top[j - 1].second, r.lps[i].top[j].second);
  }
  // logprobs 0: the chosen token's logprob and no alternatives; -1: none.
  g.prompt_logprobs = false;
  g.logprobs = 0;
  const Result z = run_alone(*m, p, g);
  ASSERT_EQ(z.lps.size(), 4u);
  EXPECT_TRUE(z.lps[0].top.empty());
  EXPECT_NEAR(z.lps[0].logprob, a[z.tokens[0]], 1e-4);
  EXPECT_TRUE(run_alone(*m, p, greedy(2)).lps.empty());
}

TEST(Engine, PrefixCacheReuseGivesTheSameContinuation) {
  auto m = v3();
  const auto p0 = prompt(0);
  EngineOptions off;
  off.prefix_cache = false;
  std::vector<int32_t> branch(p0.begin(), p0.begin() + 150);
  branch.insert(branch.end(), p0.rbegin(), p0.rbegin() + 20);
  const Result fresh = run_alone(*m, p0, greedy(12), off);
  const Result fresh_branch = run_alone(*m, branch, greedy(12), off);
  EXPECT_EQ(fresh.info.cached_tokens, 0);
  {
    Engine e(*m, {});
    auto one = [&](const std::vector<int32_t>& p, const GenerateOptions& g) {
      Result r;
      e.submit(p, g, collect(r));
      drain(e);
      return r;
    };
    const Result first = one(p0, greedy(12));
    EXPECT_EQ(first.info.cached_tokens, 0);
    EXPECT_EQ(first.tokens, fresh.tokens);
    const Result again = one(p0, greedy(12));
    EXPECT_EQ(again.info.cached_tokens, 192) << "three full blocks of the 200-token prompt";
    EXPECT_EQ(again.tokens, fresh.tokens);
    const Result br = one(branch, greedy(12));
    EXPECT_EQ(br.info.cached_tokens, 128);
    EXPECT_EQ(br.tokens, fresh_branch.tokens);
    // The prompt plus its output is a prefix of a follow-up turn. The first turn's cache held
    // 200 + 11 positions (the last token is never fed), so three full blocks are reusable.
    std::vector<int32_t> turn2 = p0;
    turn2.insert(turn2.end(), fresh.tokens.begin(), fresh.tokens.end());
    turn2.insert(turn2.end(), p0.begin(), p0.begin() + 60);
    const Result t2 = one(turn2, greedy(6));
    EXPECT_EQ(t2.info.cached_tokens, 192);
    EXPECT_EQ(t2.tokens, run_alone(*m, turn2, greedy(6), off).tokens);
  }
  expect_cache_empty(*m);  // the engine released its cached prefixes
  {
    // Speculative requests reuse prefixes whose MTP latents are cached too.
    Engine e(*m, {});
    for (int64_t want_cached : {int64_t{0}, int64_t{192}}) {
      Result r;
      e.submit(p0, greedy(12, true), collect(r));
      drain(e);
      EXPECT_EQ(r.info.cached_tokens, want_cached);
      EXPECT_EQ(r.tokens, fresh.tokens);
    }
  }
  expect_cache_empty(*m);
}

TEST(Engine, RejectsBadRequests) {
  auto m = v3(1, 64);
  Engine e(*m, {});
  const int32_t V = static_cast<int32_t>(m->config().vocab_size);
  auto submit = [&](std::vector<int32_t> p, GenerateOptions g = greedy(4)) { e.submit(std::move(p), g, {}); };
  EXPECT_THROW(submit({}), Error);
  EXPECT_THROW(submit({0, V}), Error);
  EXPECT_THROW(submit({0, -3}), Error);
  EXPECT_THROW(submit(std::vector<int32_t>(65, 7)), Error);
  GenerateOptions g = greedy(4);
  g.max_tokens = -1;
  EXPECT_THROW(submit({0, 5}, g), Error);
  g = greedy(4);
  g.logprobs = 21;
  EXPECT_THROW(submit({0, 5}, g), Error);
  g = greedy(4);
  g.sampling.temperature = -1.0f;
  EXPECT_THROW(submit({0, 5}, g), Error);
  g = greedy(4);
  g.sampling.top_p = 0.0f;
  EXPECT_THROW(submit({0, 5}, g), Error);
  EXPECT_EQ(e.active(), 0u) << "rejected requests must not be queued";
  EXPECT_FALSE(e.step());
  Model v2(kFixtures + "/v2lite-bf16");
  Engine e2(v2, {});
  EXPECT_THROW(e2.submit({0, 5}, greedy(4, true), {}), Error) << "speculative without an MTP module";
  EngineOptions bad;
  bad.max_batch = 0;
  EXPECT_THROW(Engine e3(*m, bad), Error);
  // A prompt of exactly the context is accepted; it can only finish at once.
  Result r;
  e.submit(std::vector<int32_t>(64, 7), greedy(4), collect(r));
  drain(e);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.info.reason, "length");
  EXPECT_TRUE(r.tokens.empty());
}

// A cache that fits one sequence (ctx 128: 3 blocks) and three concurrent 100-token requests:
// every request finishes (no crash, no hang, no leaked block), the failures name the full KV
// cache, and the engine serves the next request normally.
TEST(Engine, KvCacheExhaustionFinishesCleanly) {
  auto m = v3(1, 128);
  EngineOptions eo;
  eo.prefix_cache = false;
  const auto p0 = prompt(0);
  const std::vector<int32_t> p(p0.begin(), p0.begin() + 100);
  const Result alone = run_alone(*m, p, greedy(20), eo);
  ASSERT_EQ(alone.tokens.size(), 20u);
  Engine e(*m, eo);
  std::vector<Result> rs(3);
  for (auto& r : rs) e.submit(p, greedy(20), collect(r));
  drain(e);
  int failed = 0;
  for (const auto& r : rs) {
    ASSERT_TRUE(r.finished);
    if (r.tokens.size() < 20u) {
      ++failed;
      EXPECT_NE(r.info.error.find("KV cache"), std::string::npos) << r.info.reason << ": " << r.info.error;
    } else {
      EXPECT_EQ(r.tokens, alone.tokens);
    }
  }
  EXPECT_GE(failed, 1);
  expect_cache_empty(*m);
  Result after;
  e.submit(p, greedy(20), collect(after));
  drain(e);
  EXPECT_EQ(after.tokens, alone.tokens);
  EXPECT_EQ(after.info.reason, "length");
}

// Stricter: the requests that fit run to the end and only the others stop, with "length".
// DISABLED: Engine::step checks each input against free_blocks() without counting the blocks
// that earlier inputs of the same step will take, so Model::forward throws and every request of
// the batch finishes with "error" (see the report). Enable when that is fixed.
TEST(Engine, KvCacheExhaustionOnlyStopsWhatDoesNotFit) {
  auto m = v3(1, 128);
  EngineOptions eo;
  eo.prefix_cache = false;
  const auto p0 = prompt(0);
  const std::vector<int32_t> p(p0.begin(), p0.begin() + 100);
  const Result alone = run_alone(*m, p, greedy(20), eo);
  Engine e(*m, eo);
  std::vector<Result> rs(3);
  for (auto& r : rs) e.submit(p, greedy(20), collect(r));
  drain(e);
  int full = 0, complete = 0;
  for (const auto& r : rs) {
    ASSERT_TRUE(r.finished);
    EXPECT_NE(r.info.reason, "error") << r.info.error;
    if (r.tokens.size() == 20u) {
      ++complete;
      EXPECT_EQ(r.tokens, alone.tokens);
    } else {
      ++full;
      EXPECT_EQ(r.info.reason, "length");
    }
  }
  EXPECT_GE(full, 1);
  EXPECT_GE(complete, 1);
  expect_cache_empty(*m);
}

// ---- StopStrings ----

std::string feed(StopStrings& s, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += s.push(p);
  return out;
}

TEST(StopStrings, PassesTextWithoutStops) {
  StopStrings s({});
  EXPECT_EQ(s.push("hello"), "hello");
  EXPECT_EQ(s.push(" world"), " world");
  EXPECT_EQ(s.flush(), "");
  EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, HoldsBackPartialMatches) {
  StopStrings s({"STOP"});
  EXPECT_EQ(s.push("abc S"), "abc ");
  EXPECT_EQ(s.push("T"), "");
  EXPECT_EQ(s.push("x"), "STx") << "a broken partial match is released";
  EXPECT_EQ(s.push("ST"), "");
  EXPECT_EQ(s.flush(), "ST") << "held text is released at the end";
  EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, StopInTheMiddleOfAPiece) {
  StopStrings s({"</end>"});
  EXPECT_EQ(s.push("answer: 42</e"), "answer: 42");
  EXPECT_EQ(s.push("nd> and more"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.push("later"), "");
  EXPECT_EQ(s.flush(), "");
  StopStrings t({"ab"});
  EXPECT_EQ(t.push("xxabyy"), "xx");
  EXPECT_TRUE(t.stopped());
}

TEST(StopStrings, MultipleStopsEarliestWins) {
  StopStrings s({"world", "lo w", "\n\n"});
  EXPECT_EQ(feed(s, {"hel", "lo", " ", "wor", "ld"}), "hel");
  EXPECT_TRUE(s.stopped());
  StopStrings t({"xyz", "b"});
  EXPECT_EQ(t.push("aaxy"), "aa");
  EXPECT_EQ(t.push("b"), "xy");
  EXPECT_TRUE(t.stopped());
  // Overlapping prefixes: the longest possible match is held.
  StopStrings u({"aab", "ab"});
  EXPECT_EQ(u.push("ca"), "c");
  EXPECT_EQ(u.push("a"), "");
  EXPECT_EQ(u.push("c"), "aac");
  EXPECT_EQ(u.flush(), "");
}

TEST(StopStrings, Utf8AndEmptyStops) {
  StopStrings s({"", "。"});
  EXPECT_EQ(s.push("你好"), "你好");
  EXPECT_EQ(s.push("\xe3\x80"), "") << "half of the stop's UTF-8 bytes are held";
  EXPECT_EQ(s.push("\x82 next"), "");
  EXPECT_TRUE(s.stopped());
}

// ---- dsv3 generate --json ----

using dsv3::testing::run_cmd;

TEST(GenerateCli, JsonGreedyAndSpeculative) {
  const json& c = ref()["v3-fp8"][1];
  std::string list;
  for (int32_t t : ids(c["prompt"])) list += (list.empty() ? "" : ",") + std::to_string(t);
  const std::string base =
      std::string(DSV3_BIN) + " generate -m " + kFixtures + "/v3-fp8 --prompt-ids " + list + " --ignore-eos --json";
  int rc = -1;
  const std::string out = run_cmd(base + " -n 32 2>/dev/null", rc);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out);
  const auto tokens = j["tokens"].get<std::vector<int32_t>>();
  expect_greedy_matches(tokens, c, "generate --json");
  EXPECT_TRUE(j["text"].is_null()) << "no tokenizer.json in the fixture";
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["mtp"]["drafted"], 0);
  EXPECT_EQ(j["timings"]["prompt_tokens"], 9);
  EXPECT_EQ(j["timings"]["completion_tokens"], 32);

  const json s = json::parse(run_cmd(base + " -n 32 --speculative mtp 2>/dev/null", rc));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(s["tokens"].get<std::vector<int32_t>>(), tokens);
  const int64_t drafted = s["mtp"]["drafted"], accepted = s["mtp"]["accepted"];
  EXPECT_GT(drafted, 0);
  EXPECT_LE(accepted, drafted);

  const json five = json::parse(run_cmd(base + " -n 5 2>/dev/null", rc));
  EXPECT_EQ(five["tokens"].size(), 5u);
  run_cmd(base + " --speculative eagle >/dev/null 2>&1", rc);
  EXPECT_NE(rc, 0);
  run_cmd(std::string(DSV3_BIN) + " generate -m " + kFixtures + "/v2lite-bf16 --prompt-ids 0,5 --speculative mtp --json >/dev/null 2>&1", rc);
  EXPECT_NE(rc, 0);
  const std::string bad = run_cmd(std::string(DSV3_BIN) + " generate -m " + kFixtures + "/v3-fp8 --prompt-ids 0,5,x --json 2>/dev/null", rc);
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(bad.empty()) << bad;
}

// `bench --parallel P --speculative` reports the P streams' drafts; by default they draft only
// while one stream runs (--draft-max-batch 1), so streams that always run together never do.
TEST(BenchCli, DraftMaxBatch) {
  int rc = 0;
  const std::string base = std::string(DSV3_BIN) + " bench -m " + kFixtures +
                           "/v3-fp8 -p 4 -n 12 --reps 1 --parallel 3 --speculative --no-bandwidth --json";
  const json def = json::parse(run_cmd(base + " 2>/dev/null", rc));
  ASSERT_EQ(rc, 0);
  EXPECT_GT(def["mtp"]["drafted"].get<int64_t>(), 0) << "one stream alone drafts";
  EXPECT_EQ(def["mtp_parallel"]["drafted"].get<int64_t>(), 0);
  const json all = json::parse(run_cmd(base + " --draft-max-batch 0 2>/dev/null", rc));
  ASSERT_EQ(rc, 0);
  EXPECT_GT(all["mtp_parallel"]["drafted"].get<int64_t>(), 0);
  for (const char* cmd : {" bench", " serve"}) {
    const std::string err = run_cmd(std::string(DSV3_BIN) + cmd + " -m " + kFixtures + "/v3-fp8 --draft-max-batch -1 2>&1", rc);
    EXPECT_NE(rc, 0) << cmd;
    EXPECT_NE(err.find("--draft-max-batch must be >= 0"), std::string::npos) << cmd << ": " << err;
  }
}

}  // namespace
}  // namespace dsv3
