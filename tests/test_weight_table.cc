// The weight table (model/weight_table.h) against the tensor sets of the fixture checkpoints that
// transformers wrote, read here straight from the safetensors headers with nlohmann::json; plus
// checkpoint_stats / expected_parameters / init_random_checkpoint against a closed-form
// parameter count from the config fields.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "model/config.h"
#include "model/init.h"
#include "model/weight_table.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kFix = DSV3_FIXTURES;

struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
};

bool is_scale(const std::string& n) { return n.size() > 10 && n.compare(n.size() - 10, 10, "_scale_inv") == 0; }

// Every tensor of every *.safetensors in dir, from the raw headers.
std::map<std::string, RawTensor> read_headers(const std::string& dir) {
  std::map<std::string, RawTensor> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    std::ifstream f(e.path(), std::ios::binary);
    uint8_t len[8];
    f.read(reinterpret_cast<char*>(len), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
    std::string h(n, '\0');
    f.read(h.data(), static_cast<std::streamsize>(n));
    const json j = json::parse(h);
    for (const auto& [k, v] : j.items()) {
      if (k == "__metadata__") continue;
      out[k] = {v["dtype"].get<std::string>(), v["shape"].get<std::vector<int64_t>>()};
    }
  }
  return out;
}

void expect_table_matches_fixture(const std::string& name) {
  SCOPED_TRACE(name);
  const ModelConfig cfg = ModelConfig::load(kFix + "/" + name);
  const auto raw = read_headers(kFix + "/" + name);
  std::map<std::string, std::vector<int64_t>> want;
  for (const auto& [k, t] : raw)
    if (!is_scale(k)) want[k] = t.shape;
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& w : weight_table(cfg)) {
    EXPECT_TRUE(got.emplace(w.name, w.shape.vec()).second) << "duplicate " << w.name;
  }
  for (const auto& [k, s] : want) {
    auto it = got.find(k);
    if (it == got.end()) ADD_FAILURE() << "table lacks " << k;
    else EXPECT_EQ(it->second, s) << k;
  }
  for (const auto& [k, s] : got) EXPECT_TRUE(want.count(k)) << "table has extra " << k;
  // Every FP8 tensor has a scale of shape ceil(/128) and is a linear weight; nothing else is FP8.
  int fp8 = 0;
  for (const auto& w : weight_table(cfg)) {
    const RawTensor& t = raw.at(w.name);
    if (t.dtype != "F8_E4M3") {
      EXPECT_FALSE(raw.count(scale_inv_name(w.name))) << w.name;
      continue;
    }
    ++fp8;
    EXPECT_TRUE(w.fp8_quantized()) << w.name;
    const RawTensor& s = raw.at(scale_inv_name(w.name));
    EXPECT_EQ(s.dtype, "F32");
    EXPECT_EQ(s.shape, (std::vector<int64_t>{(t.shape[0] + 127) / 128, (t.shape[1] + 127) / 128})) << w.name;
    EXPECT_EQ(Shape::from(s.shape), scale_inv_shape(w.shape));
  }
  if (cfg.quantization.fp8) {
    // Official layout: every linear projection is FP8.
    int linear = 0;
    for (const auto& w : weight_table(cfg)) linear += w.fp8_quantized();
    EXPECT_EQ(fp8, linear);
  }
  // Parameter count: the table's sum equals the fixture's element count.
  int64_t params = 0;
  for (const auto& [k, s] : want) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    params += n;
  }
  EXPECT_EQ(expected_parameters(cfg), params);
  auto ck = Checkpoint::open(kFix + "/" + name);
  EXPECT_NO_THROW(validate_checkpoint(cfg, *ck));
  EXPECT_EQ(checkpoint_stats(*ck).total_parameters, params);
  EXPECT_EQ(checkpoint_stats(*ck).tensors, static_cast<int64_t>(raw.size()));
}

TEST(WeightTable, MatchesV3Fp8Fixture) { expect_table_matches_fixture("v3-fp8"); }
TEST(WeightTable, MatchesV2LiteFixture) { expect_table_matches_fixture("v2lite-bf16"); }
TEST(WeightTable, MatchesE2eFixture) { expect_table_matches_fixture("e2e-bf16"); }

TEST(WeightTable, DenseMoeAndMtpLayers) {
  const ModelConfig cfg = ModelConfig::load(kFix + "/v3-fp8");
  std::map<std::string, WeightSpec> t;
  for (const auto& w : weight_table(cfg)) t.emplace(w.name, w);
  // Layer 0 dense (first_k_dense_replace 1): a plain FFN of intermediate_size.
  EXPECT_EQ(t.at("model.layers.0.mlp.gate_proj.weight").shape, Shape({512, 256}));
  EXPECT_EQ(t.at("model.layers.0.mlp.down_proj.weight").shape, Shape({256, 512}));
  EXPECT_FALSE(t.count("model.layers.0.mlp.gate.weight"));
  // Layers 1..3 and MTP layer 4: router, bias, 16 experts of 96, one shared expert.
  for (int L = 1; L <= 4; ++L) {
    const std::string p = "model.layers." + std::to_string(L) + ".mlp.";
    EXPECT_FALSE(t.count(p + "gate_proj.weight"));
    EXPECT_EQ(t.at(p + "gate.weight").shape, Shape({16, 256}));
    EXPECT_EQ(t.at(p + "gate.weight").kind, WeightKind::kRouter);
    EXPECT_EQ(t.at(p + "gate.e_score_correction_bias").kind, WeightKind::kBias);
    EXPECT_EQ(t.at(p + "experts.15.down_proj.weight").shape, Shape({256, 96}));
    EXPECT_EQ(t.at(p + "experts.15.down_proj.weight").expert, 15);
    EXPECT_FALSE(t.count(p + "experts.16.down_proj.weight"));
    EXPECT_EQ(t.at(p + "shared_experts.up_proj.weight").shape, Shape({96, 256}));
    EXPECT_EQ(t.at(p + "shared_experts.up_proj.weight").expert, -1);
  }
  // MTP module extras only on layer 4.
  for (const char* n : {"embed_tokens.weight", "enorm.weight", "hnorm.weight", "eh_proj.weight",
                        "shared_head.norm.weight", "shared_head.head.weight"}) {
    EXPECT_TRUE(t.count(std::string("model.layers.4.") + n)) << n;
    EXPECT_FALSE(t.count(std::string("model.layers.3.") + n)) << n;
  }
  EXPECT_EQ(t.at("model.layers.4.eh_proj.weight").shape, Shape({256, 512}));
  EXPECT_EQ(t.at("model.layers.4.eh_proj.weight").kind, WeightKind::kEhProj);
  EXPECT_EQ(t.at("model.layers.4.shared_head.head.weight").kind, WeightKind::kHead);
  EXPECT_EQ(t.at("model.layers.4.embed_tokens.weight").layer, 4);
  // MLA with q LoRA.
  EXPECT_EQ(t.at("model.layers.2.self_attn.q_b_proj.weight").shape, Shape({4 * 48, 192}));
  EXPECT_EQ(t.at("model.layers.2.self_attn.kv_a_proj_with_mqa.weight").shape, Shape({80, 256}));
  EXPECT_EQ(t.at("model.layers.2.self_attn.kv_b_proj.weight").shape, Shape({4 * 64, 64}));
  EXPECT_EQ(t.at("model.layers.2.self_attn.o_proj.weight").shape, Shape({256, 4 * 32}));
  EXPECT_FALSE(t.count("model.layers.2.self_attn.q_proj.weight"));

  // tie_word_embeddings drops lm_head; greedy routing drops the correction bias.
  json j = json::parse(read_text_file(kFix + "/v3-fp8/config.json"));
  j["tie_word_embeddings"] = true;
  j["topk_method"] = "group_limited_greedy";
  std::set<std::string> names;
  for (const auto& w : weight_table(ModelConfig::from_json(j))) names.insert(w.name);
  EXPECT_FALSE(names.count("lm_head.weight"));
  EXPECT_FALSE(names.count("model.layers.1.mlp.gate.e_score_correction_bias"));
  EXPECT_TRUE(names.count("model.layers.1.mlp.gate.weight"));
}

// Closed-form parameter count from config fields (spec section 1), written without the table.
int64_t params_from_fields(const json& c) {
  auto g = [&](const char* k) { return c.at(k).get<int64_t>(); };
  const int64_t H = g("hidden_size"), V = g("vocab_size"), nh = g("num_attention_heads");
  const int64_t qk = g("qk_nope_head_dim") + g("qk_rope_head_dim"), kvr = g("kv_lora_rank");
  const int64_t ql = c.at("q_lora_rank").is_null() ? 0 : g("q_lora_rank");
  const int64_t L = g("num_hidden_layers"), M = g("num_nextn_predict_layers");
  const int64_t E = g("n_routed_experts"), I = g("moe_intermediate_size"), S = g("n_shared_experts");
  const bool bias = c.at("topk_method") == "noaux_tc";
  const int64_t attn = (ql ? ql * H + ql + nh * qk * ql : nh * qk * H) + (kvr + g("qk_rope_head_dim")) * H + kvr +
                       nh * (g("qk_nope_head_dim") + g("v_head_dim")) * kvr + H * nh * g("v_head_dim");
  const int64_t dense_ffn = 3 * g("intermediate_size") * H;
  const int64_t moe_ffn = E * H + (bias ? E : 0) + E * 3 * I * H + 3 * S * I * H;
  int64_t n = V * H + H + V * H;  // embed, final norm, lm_head
  for (int64_t i = 0; i < L + M; ++i) {
    n += 2 * H + attn;  // input/post-attention norms
    n += i >= g("first_k_dense_replace") ? moe_ffn : dense_ffn;
    if (i >= L) n += V * H + 2 * H + 2 * H * H + H + V * H;  // MTP: embed, enorm/hnorm, eh_proj, head norm+head
  }
  return n;
}

TEST(WeightTable, ExpectedParametersMatchesClosedForm) {
  for (const char* name : {"v3-fp8", "v2lite-bf16", "e2e-bf16"}) {
    const json j = json::parse(read_text_file(kFix + "/" + std::string(name) + "/config.json"));
    EXPECT_EQ(expected_parameters(ModelConfig::from_json(j)), params_from_fields(j)) << name;
  }
  // Full DeepSeek-V3 (defaults, with the released MTP layer): 671B + 14B MTP as published.
  json v3 = ModelConfig::from_json(json{{"model_type", "deepseek_v3"}, {"num_nextn_predict_layers", 1}}).to_json();
  EXPECT_EQ(expected_parameters(ModelConfig::from_json(v3)), params_from_fields(v3));
  const int64_t total = expected_parameters(ModelConfig::from_json(v3));
  EXPECT_GT(total, 684000000000);
  EXPECT_LT(total, 686000000000) << "published: 685B";
}

// init -> checkpoint whose tensors, counted independently, match the config; both dtypes, no q
// LoRA, MTP, two shared experts; init refuses an existing directory.
TEST(WeightTable, InitCheckpointMatchesConfig) {
  const fs::path base = fs::temp_directory_path() / ("dsv3_wt_" + std::to_string(::getpid()));
  fs::remove_all(base);
  json j = json::parse(read_text_file(kFix + "/v3-fp8/config.json"));
  j["vocab_size"] = 300;
  j["q_lora_rank"] = nullptr;
  j["n_shared_experts"] = 2;
  j["num_nextn_predict_layers"] = 1;
  j["hidden_size"] = 200;  // partial FP8 blocks
  j["n_routed_experts"] = 8;
  int k = 0;
  for (bool fp8 : {true, false}) {
    const std::string out = (base / ("ck" + std::to_string(k++))).string();
    InitOptions opt;
    opt.fp8 = fp8;
    opt.seed = 3;
    opt.max_shard_bytes = 400000;  // several shards
    const ModelConfig cfg = ModelConfig::from_json(j);
    init_random_checkpoint(cfg, out, opt);
    const auto raw = read_headers(out);
    int64_t params = 0, scales = 0;
    for (const auto& [n, t] : raw) {
      if (is_scale(n)) {
        ++scales;
        continue;
      }
      int64_t e = 1;
      for (int64_t d : t.shape) e *= d;
      params += e;
    }
    EXPECT_EQ(params, params_from_fields(j));
    EXPECT_EQ(params, expected_parameters(cfg));
    EXPECT_EQ(scales > 0, fp8);
    auto files = open_model_files(out);
    EXPECT_EQ(files.config.quantization.fp8, fp8);
    EXPECT_EQ(files.config.q_lora_rank, 0);
    EXPECT_GT(files.checkpoint->shards().size(), 1u);
    EXPECT_EQ(checkpoint_stats(*files.checkpoint).total_parameters, params);
    EXPECT_EQ(checkpoint_stats(*files.checkpoint).tensors, static_cast<int64_t>(raw.size()));
    EXPECT_THROW(init_random_checkpoint(cfg, out, opt), Error);
  }
  fs::remove_all(base);
}

}  // namespace
}  // namespace dsv3
