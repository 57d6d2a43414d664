// dsv3 info [--json] DIR: validate a checkpoint and summarise it.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "io/checkpoint.h"
#include "model/weight_table.h"

namespace dsv3::cli {
namespace {

struct InfoOpts {
  std::string dir;
  bool json = false;
};

int run_info(const InfoOpts& o) {
  ModelFiles m = open_model_files(o.dir);
  const ModelConfig& c = m.config;
  const CheckpointStats s = checkpoint_stats(*m.checkpoint);
  int64_t dense = 0, moe = 0;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) (c.is_moe_layer(i) ? moe : dense)++;
  nlohmann::ordered_json j;
  j["architecture"] = c.architecture;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["dense_layers"] = dense;
  j["moe_layers"] = moe;
  j["experts"] = c.n_routed_experts;
  j["total_parameters"] = s.total_parameters;
  j["active_parameters_per_token"] = active_parameters_per_token(c);
  j["tensors"] = s.tensors;
  nlohmann::ordered_json dt = nlohmann::ordered_json::object();
  for (const auto& [k, v] : s.dtypes) dt[k] = v;
  j["dtypes"] = dt;
  j["bytes"] = s.bytes;
  // Latent cache: kv_lora_rank + rope values per token per main layer, float32 on CPU.
  j["kv_cache_bytes_per_token"] = c.kv_cache_dim() * c.num_hidden_layers * 4;
  j["quantization"] = c.quantization.name();
  if (o.json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("checkpoint        {}\n", o.dir);
  fmt::print("architecture      {} ({})\n", c.architecture, c.model_type);
  fmt::print("layers            {} ({} dense, {} MoE) + {} MTP\n", c.num_hidden_layers, dense, moe,
             c.num_nextn_predict_layers);
  fmt::print("experts           {} routed, {} shared, {} per token\n", c.n_routed_experts, c.n_shared_experts,
             c.num_experts_per_tok);
  fmt::print("parameters        {} total, {} active per token\n", s.total_parameters, active_parameters_per_token(c));
  fmt::print("tensors           {} ({} bytes)\n", s.tensors, s.bytes);
  std::string d;
  for (const auto& [k, v] : s.dtypes) d += fmt::format("{}{}: {}", d.empty() ? "" : ", ", k, v);
  fmt::print("dtypes            {}\n", d);
  fmt::print("kv cache          {} bytes per token\n", j["kv_cache_bytes_per_token"].get<int64_t>());
  fmt::print("quantization      {}\n", j["quantization"].get<std::string>());
  return 0;
}

const bool registered = register_command({"info", "Validate a checkpoint directory and summarise it",
                                          [](CLI::App& app) {
                                            auto o = std::make_shared<InfoOpts>();
                                            app.add_option("dir", o->dir, "Checkpoint directory")->required();
                                            app.add_flag("--json", o->json, "Print one JSON object");
                                            return [o] { return run_info(*o); };
                                          }});

}  // namespace
}  // namespace dsv3::cli
