#include "cli/common.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "dist/comm.h"
#include "ops/ops.h"

namespace dsv3::cli {

void add_model_args(CLI::App& app, ModelArgs& a) {
  app.add_option("-m,--model", a.dir, "Checkpoint directory (config.json + safetensors)")->required();
  app.add_option("-t,--threads", a.threads, "Threads (default: all cores)");
  app.add_option("--ctx", a.ctx, "Context length per sequence (default: max_position_embeddings, at most 16384)");
  app.add_option("--kv-dtype", a.kv_dtype,
                 "Latent KV cache precision: f32, or bf16 (half the cache memory; latents rounded to BF16)")
      ->capture_default_str();
  app.add_option("--prefill", a.prefill,
                 "Precision of matmuls over 9+ tokens (prefill, scoring; decode stays f32): f32, or bf16 "
                 "(tokens and weights rounded to BF16, fp32 sums; needs AVX512_BF16; not within 0.02 of "
                 "transformers, so opt-in)")
      ->capture_default_str();
  app.add_option("--dump", a.dump_dir,
                 "Write every named intermediate (embed, q, kv_latent, attn_out, router_logits, ffn_out, "
                 "residual, final_norm, logits ...) as float32 files into this directory");
}

std::unique_ptr<Model> load_model(const ModelArgs& a, int64_t max_seqs) {
  ModelOptions o;
  o.threads = a.threads;
  o.ctx = a.ctx;
  o.max_seqs = max_seqs;
  o.kv_dtype = parse_kv_dtype(a.kv_dtype);
  if (a.prefill != "f32" && a.prefill != "bf16") fail("--prefill: '{}' is not f32 or bf16", a.prefill);
  ops::set_prefill_bf16(a.prefill == "bf16");
  o.ep_rank = dist::rank();
  o.ep_size = dist::size();
  auto m = std::make_unique<Model>(a.dir, o);
  if (!dist::is_root()) {
    m->serve_experts();
    throw WorkerDone{};
  }
  if (!a.dump_dir.empty()) {
    std::filesystem::create_directories(a.dump_dir);
    auto counts = std::make_shared<std::map<std::string, int>>();
    const std::string dir = a.dump_dir;
    m->set_dump([dir, counts](const std::string& name, int layer, const float* p, int64_t rows, int64_t cols) {
      // <name>[.L<layer>].<call>.f32, raw little-endian float32 [rows, cols]; manifest.jsonl lists shapes.
      std::string base = layer >= 0 ? fmt::format("{}.L{}", name, layer) : name;
      const int call = (*counts)[base]++;
      const std::string file = fmt::format("{}.{}.f32", base, call);
      std::ofstream f(std::filesystem::path(dir) / file, std::ios::binary);
      f.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(rows * cols * 4));
      std::ofstream man(std::filesystem::path(dir) / "manifest.jsonl", std::ios::app);
      man << nlohmann::json{{"file", file}, {"name", name}, {"layer", layer}, {"call", call}, {"shape", {rows, cols}}}.dump()
          << "\n";
    });
  }
  return m;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.pop_back();
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.erase(item.begin());
    if (item.empty() && j == s.size() && i == s.size() && !ids.empty()) break;
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("");
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      fail("token id list: '{}' is not a non-negative integer", item);
    }
    i = j + 1;
  }
  if (ids.empty()) fail("token id list is empty");
  return ids;
}

}  // namespace dsv3::cli
