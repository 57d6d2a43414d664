// config.json parsing and validation (model/config.h) against the fixture configs written by
// transformers (/work/shared/fixtures), and each validation rule's error message.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "io/mapped_file.h"
#include "model/config.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kFix = DSV3_FIXTURES;

json fixture_json(const std::string& name) { return json::parse(read_text_file(kFix + "/" + name + "/config.json")); }

TEST(Config, V3Fp8FixtureValues) {
  const ModelConfig c = ModelConfig::load(kFix + "/v3-fp8");  // a directory: reads its config.json
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.architecture, "DeepseekV3ForCausalLM");
  EXPECT_EQ(c.vocab_size, 2048);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.intermediate_size, 512);
  EXPECT_EQ(c.moe_intermediate_size, 96);
  EXPECT_EQ(c.num_hidden_layers, 4);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.total_layers(), 5);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.n_routed_experts, 16);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.kv_lora_rank, 64);
  EXPECT_EQ(c.q_lora_rank, 192);
  EXPECT_EQ(c.qk_rope_head_dim, 16);
  EXPECT_EQ(c.v_head_dim, 32);
  EXPECT_EQ(c.qk_nope_head_dim, 32);
  EXPECT_EQ(c.qk_head_dim(), 48);
  EXPECT_EQ(c.kv_cache_dim(), 80);
  EXPECT_EQ(c.topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(c.scoring_func, Scoring::kSigmoid);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.first_k_dense_replace, 1);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(c.quantization.fp8);
  EXPECT_EQ(c.quantization.activation_scheme, "dynamic");
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
  EXPECT_FALSE(c.is_moe_layer(0));
  for (int i = 1; i < 5; ++i) EXPECT_TRUE(c.is_moe_layer(i)) << i;
  EXPECT_FALSE(c.is_mtp_layer(3));
  EXPECT_TRUE(c.is_mtp_layer(4));
}

TEST(Config, YarnFields) {
  const ModelConfig c = ModelConfig::load(kFix + "/v3-fp8/config.json");
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.rope_scaling.beta_fast, 32.0);
  EXPECT_EQ(c.rope_scaling.beta_slow, 1.0);
  EXPECT_EQ(c.rope_scaling.mscale, 1.0);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 1.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 128);
  // transformers DeepseekV3Attention: scaling = qk_head_dim^-0.5 * (0.1 * mscale_all_dim * ln(factor) + 1)^2
  const double m = 0.1 * 1.0 * std::log(4.0) + 1.0;
  EXPECT_NEAR(c.softmax_scale(), std::pow(48.0, -0.5) * m * m, 1e-15);
  EXPECT_DOUBLE_EQ(c.yarn_mscale(1.0), m);

  // transformers 5 spelling: rope_parameters with rope_type and rope_theta inside.
  json j = fixture_json("v3-fp8");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 40}, {"rope_theta", 50000.0},
                          {"original_max_position_embeddings", 4096}, {"mscale_all_dim", 0}};
  const ModelConfig c5 = ModelConfig::from_json(j);
  EXPECT_EQ(c5.rope_scaling.factor, 40.0);
  EXPECT_EQ(c5.rope_theta, 50000.0);
  EXPECT_EQ(c5.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c5.softmax_scale(), std::pow(48.0, -0.5));  // mscale_all_dim 0: no correction

  j.erase("rope_parameters");
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
  EXPECT_THROW(ModelConfig::from_json(j), Error);
}

TEST(Config, V2LiteFixtureValues) {
  const ModelConfig c = ModelConfig::load(kFix + "/v2lite-bf16");
  EXPECT_EQ(c.model_type, "deepseek_v2");
  EXPECT_EQ(c.architecture, "DeepseekV2ForCausalLM");
  EXPECT_EQ(c.q_lora_rank, 0);  // null -> no q LoRA
  EXPECT_EQ(c.topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(c.scoring_func, Scoring::kSoftmax);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.n_shared_experts, 2);
  EXPECT_EQ(c.n_routed_experts, 8);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.rope_scaling.type, "");
  EXPECT_FALSE(c.quantization.fp8);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  EXPECT_DOUBLE_EQ(c.softmax_scale(), 1.0 / std::sqrt(32.0));
}

TEST(Config, E2eFixtureAndDefaults) {
  const ModelConfig c = ModelConfig::load(kFix + "/e2e-bf16");
  EXPECT_EQ(c.vocab_size, 129280);
  // Fields left out take DeepseekV3Config's defaults.
  const ModelConfig d = ModelConfig::from_json(json{{"model_type", "deepseek_v3"}});
  EXPECT_EQ(d.hidden_size, 7168);
  EXPECT_EQ(d.num_hidden_layers, 61);
  EXPECT_EQ(d.n_routed_experts, 256);
  EXPECT_EQ(d.q_lora_rank, 1536);
  EXPECT_EQ(d.kv_cache_dim(), 576);
  EXPECT_EQ(d.num_key_value_heads, d.num_attention_heads);
}

TEST(Config, UnknownModelTypeRejected) {
  json j = fixture_json("v3-fp8");
  j["model_type"] = "llama";
  j["architectures"] = {"LlamaForCausalLM"};
  try {
    ModelConfig::from_json(j, "cfg.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("llama"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ModelConfig::from_json(json::array()), Error);
}

// Each rule: an edit of the V3 fixture config and the field name the message must contain.
struct Rule {
  const char* field;
  std::function<void(json&)> edit;
};

TEST(Config, EveryValidationRuleNamesTheField) {
  const Rule rules[] = {
      {"vocab_size", [](json& j) { j["vocab_size"] = 0; }},
      {"hidden_size", [](json& j) { j["hidden_size"] = -1; }},
      {"hidden_size", [](json& j) { j["hidden_size"] = "256"; }},
      {"hidden_size", [](json& j) { j["hidden_size"] = 2.5; }},
      {"num_hidden_layers", [](json& j) { j["num_hidden_layers"] = 0; }},
      {"num_attention_heads", [](json& j) { j["num_attention_heads"] = 0; }},
      {"kv_lora_rank", [](json& j) { j["kv_lora_rank"] = 0; }},
      {"qk_nope_head_dim", [](json& j) { j["qk_nope_head_dim"] = 0; }},
      {"qk_rope_head_dim", [](json& j) { j["qk_rope_head_dim"] = 0; }},
      {"qk_rope_head_dim", [](json& j) { j["qk_rope_head_dim"] = 15; }},
      {"v_head_dim", [](json& j) { j["v_head_dim"] = 0; }},
      {"max_position_embeddings", [](json& j) { j["max_position_embeddings"] = 0; }},
      {"q_lora_rank", [](json& j) { j["q_lora_rank"] = -5; }},
      {"num_nextn_predict_layers", [](json& j) { j["num_nextn_predict_layers"] = -1; }},
      {"hidden_act", [](json& j) { j["hidden_act"] = "gelu"; }},
      {"attention_bias", [](json& j) { j["attention_bias"] = true; }},
      {"attention_bias", [](json& j) { j["attention_bias"] = 1; }},
      {"num_key_value_heads", [](json& j) { j["num_key_value_heads"] = 2; }},
      {"first_k_dense_replace", [](json& j) { j["first_k_dense_replace"] = -1; }},
      {"moe_layer_freq", [](json& j) { j["moe_layer_freq"] = 0; }},
      {"intermediate_size", [](json& j) { j["intermediate_size"] = 0; }},
      {"n_routed_experts", [](json& j) { j["n_routed_experts"] = -1; }},
      {"n_routed_experts", [](json& j) { j["n_routed_experts"] = 18; }},  // not divisible by n_group 4
      {"moe_intermediate_size", [](json& j) { j["moe_intermediate_size"] = 0; }},
      {"num_experts_per_tok", [](json& j) { j["num_experts_per_tok"] = 0; }},
      {"num_experts_per_tok", [](json& j) { j["num_experts_per_tok"] = 9; }},  // 2 groups x 4 reachable
      {"n_group", [](json& j) { j["n_group"] = 0; }},
      {"n_group", [](json& j) { j["n_group"] = 16, j["topk_group"] = 16; }},  // noaux_tc: >= 2 experts per group
      {"topk_group", [](json& j) { j["topk_group"] = 0; }},
      {"topk_group", [](json& j) { j["topk_group"] = 5; }},
      {"n_shared_experts", [](json& j) { j["n_shared_experts"] = -1; }},
      {"rms_norm_eps", [](json& j) { j["rms_norm_eps"] = 0; }},
      {"rope_theta", [](json& j) { j["rope_theta"] = -1; }},
      {"rope_scaling", [](json& j) { j["rope_scaling"] = "yarn"; }},
      {"rope_scaling.factor", [](json& j) { j["rope_scaling"]["factor"] = 0; }},
      {"original_max_position_embeddings", [](json& j) { j["rope_scaling"]["original_max_position_embeddings"] = 0; }},
      {"rope_scaling", [](json& j) { j["rope_scaling"]["type"] = "dynamic"; }},
      {"eos_token_id", [](json& j) { j["eos_token_id"] = 2048; }},
      {"eos_token_id", [](json& j) { j["eos_token_id"] = "1"; }},
      {"topk_method", [](json& j) { j["topk_method"] = "best"; }},
      {"scoring_func", [](json& j) { j["scoring_func"] = "relu"; }},
      {"quant_method", [](json& j) { j["quantization_config"]["quant_method"] = "gptq"; }},
      {"fp8 format", [](json& j) { j["quantization_config"]["fmt"] = "e5m2"; }},
      {"weight_block_size", [](json& j) { j["quantization_config"]["weight_block_size"] = {64, 64}; }},
      {"quantization_config", [](json& j) { j["quantization_config"] = 3; }},
  };
  // The unedited fixture is valid.
  ASSERT_NO_THROW(ModelConfig::from_json(fixture_json("v3-fp8"), "cfg.json"));
  for (const auto& r : rules) {
    json j = fixture_json("v3-fp8");
    r.edit(j);
    try {
      ModelConfig::from_json(j, "cfg.json");
      ADD_FAILURE() << "accepted a bad " << r.field << ": " << j.dump();
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("cfg.json: ", 0), 0u) << m;
      EXPECT_NE(m.find(r.field), std::string::npos) << "wanted '" << r.field << "' in: " << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
}

TEST(Config, DeeplyNestedValueIsAnErrorNotACrash) {
  const int depth = 200000;
  const std::string text = read_text_file(kFix + "/v3-fp8/config.json");
  for (const char* key : {"\"hidden_size\"", "\"weight_block_size\""}) {
    std::string t = text;
    const size_t at = t.find(key) + std::strlen(key) + 1;  // after the colon
    t.insert(at, std::string(depth, '[') + std::string(depth, ']') + ", \"x\": ");
    const json j = json::parse(t);
    try {
      ModelConfig::from_json(j, "cfg.json");
      ADD_FAILURE() << key;
    } catch (const Error& e) {
      EXPECT_LT(std::strlen(e.what()), 300u) << key;
    }
  }
}

TEST(Config, DenseOnlyConfigSkipsMoeRules) {
  // No MoE layer at all: expert fields may be anything.
  json j = fixture_json("v3-fp8");
  j["first_k_dense_replace"] = 100;
  j["n_group"] = 3;
  j["num_experts_per_tok"] = 0;
  EXPECT_NO_THROW(ModelConfig::from_json(j));
}

TEST(Config, JsonRoundTrip) {
  for (const char* name : {"v3-fp8", "v2lite-bf16", "e2e-bf16"}) {
    const json orig = fixture_json(name);
    const ModelConfig a = ModelConfig::from_json(orig);
    const json out = a.to_json();
    // Every field the fixture sets and we model comes out with the same value.
    for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
                          "num_hidden_layers", "num_nextn_predict_layers", "num_attention_heads",
                          "n_shared_experts", "n_routed_experts", "routed_scaling_factor", "kv_lora_rank",
                          "q_lora_rank", "qk_rope_head_dim", "v_head_dim", "qk_nope_head_dim", "topk_method",
                          "n_group", "topk_group", "num_experts_per_tok", "first_k_dense_replace",
                          "norm_topk_prob", "scoring_func", "max_position_embeddings", "rms_norm_eps",
                          "rope_theta", "rope_scaling", "eos_token_id", "bos_token_id", "architectures",
                          "model_type", "quantization_config"}) {
      if (!orig.contains(k)) continue;
      EXPECT_EQ(out.at(k), orig.at(k)) << name << " field " << k;
    }
    const ModelConfig b = ModelConfig::from_json(out);
    EXPECT_EQ(b.to_json(), out) << name;
  }
  // Multiple EOS ids survive as a list.
  json j = fixture_json("v3-fp8");
  j["eos_token_id"] = {1, 2};
  EXPECT_EQ(ModelConfig::from_json(ModelConfig::from_json(j).to_json()).eos_token_ids, (std::vector<int64_t>{1, 2}));
}

TEST(Config, MalformedFileNamesThePath) {
  const fs::path dir = fs::temp_directory_path() / ("dsv3_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string p = (dir / "config.json").string();
  { std::ofstream(p) << "{\"model_type\": \"deepseek_v3\",, }"; }
  try {
    ModelConfig::load(dir.string());
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << m;
    EXPECT_NE(m.find("malformed JSON"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  fs::remove(p);
  EXPECT_THROW(ModelConfig::load(dir.string()), Error);  // missing config.json
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv3
