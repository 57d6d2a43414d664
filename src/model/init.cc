#include "model/init.h"

#include <omp.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fp8_block.h"
#include "core/log.h"
#include "core/random.h"
#include "io/checkpoint_writer.h"
#include "model/weight_table.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

float std_of(const WeightSpec& w) {
  switch (w.kind) {
    case WeightKind::kEmbedding: return 1.0f;
    case WeightKind::kNorm:
    case WeightKind::kBias: return 0.0f;
    default: return 1.0f / std::sqrt(static_cast<float>(w.shape[1]));
  }
}

}  // namespace

void init_random_checkpoint(ModelConfig cfg, const std::string& out_dir, const InitOptions& opt) {
  if (fs::exists(out_dir)) fail("{}: already exists; init never overwrites (choose a new directory)", out_dir);
  cfg.quantization.fp8 = opt.fp8;
  cfg.validate("config");
  fs::create_directories(out_dir);

  std::vector<TensorToWrite> tensors;
  uint64_t index = 0;
  for_each_weight(cfg, [&](const WeightSpec& w) {
    const uint64_t key = splitmix64(opt.seed * 0x9e3779b97f4a7c15ull + (++index));
    const float sd = std_of(w);
    if (w.kind == WeightKind::kBias) {
      tensors.push_back({w.name, DType::F32, w.shape, [n = w.shape.numel()](uint8_t* dst) {
                           std::fill_n(reinterpret_cast<float*>(dst), n, 0.0f);
                         }});
      return;
    }
    if (w.kind == WeightKind::kNorm) {
      tensors.push_back({w.name, DType::BF16, w.shape, [n = w.shape.numel()](uint8_t* dst) {
                           std::fill_n(reinterpret_cast<uint16_t*>(dst), n, f32_to_bf16(1.0f));
                         }});
      return;
    }
    const int64_t rows = w.shape[0], cols = w.shape[1];
    if (!(opt.fp8 && w.fp8_quantized())) {
      tensors.push_back({w.name, DType::BF16, w.shape, [=](uint8_t* dst) {
                           auto* d = reinterpret_cast<uint16_t*>(dst);
#pragma omp parallel for schedule(static)
                           for (int64_t r = 0; r < rows; ++r)
                             for (int64_t c = 0; c < cols; ++c)
                               d[r * cols + c] = f32_to_bf16(sd * normal_at(key, static_cast<uint64_t>(r * cols + c)));
                         }});
      return;
    }
    // FP8: quantise 128-row stripes; the scales computed on the way are kept for the
    // _scale_inv tensor, which is written right after its weight.
    const Shape ss = scale_inv_shape(w.shape);
    auto scales = std::make_shared<std::vector<float>>(static_cast<size_t>(ss.numel()));
    tensors.push_back({w.name, DType::F8_E4M3, w.shape, [=](uint8_t* dst) {
                         const int64_t stripes = ss[0];
#pragma omp parallel
                         {
                           std::vector<float> buf(static_cast<size_t>(kFp8Block * cols));
#pragma omp for schedule(dynamic)
                           for (int64_t s = 0; s < stripes; ++s) {
                             const int64_t r0 = s * kFp8Block, r = std::min(kFp8Block, rows - r0);
                             for (int64_t i = 0; i < r; ++i)
                               for (int64_t c = 0; c < cols; ++c)
                                 buf[static_cast<size_t>(i * cols + c)] =
                                     sd * normal_at(key, static_cast<uint64_t>((r0 + i) * cols + c));
                             quantize_fp8_stripe(buf.data(), r, cols, cols, dst + r0 * cols,
                                                 scales->data() + s * ss[1]);
                           }
                         }
                       }});
    tensors.push_back({scale_inv_name(w.name), DType::F32, ss, [scales](uint8_t* dst) {
                         std::copy(scales->begin(), scales->end(), reinterpret_cast<float*>(dst));
                       }});
  });

  auto shards = plan_shards(std::move(tensors), opt.max_shard_bytes);
  std::map<std::string, std::string> weight_map;
  uint64_t total = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    log_info("init: writing {} ({}/{}, {:.1f} MB)", shards[i].file, i + 1, shards.size(), shards[i].bytes() / 1e6);
    write_safetensors((fs::path(out_dir) / shards[i].file).string(), shards[i].tensors);
    for (const auto& t : shards[i].tensors) weight_map[t.name] = shards[i].file;
    total += shards[i].bytes();
  }
  write_index(out_dir, weight_map, total);
  {
    std::ofstream f(fs::path(out_dir) / "config.json");
    f << cfg.to_json().dump(2) << "\n";
    if (!f) fail("{}: cannot write config.json", out_dir);
  }
  if (!opt.tokenizer_dir.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path src = fs::path(opt.tokenizer_dir) / name;
      if (!fs::exists(src)) fail("{}: no {} to copy", opt.tokenizer_dir, name);
      fs::copy_file(src, fs::path(out_dir) / name, fs::copy_options::overwrite_existing);
    }
  }
}

}  // namespace dsv3
