#include "train/checkpoint_io.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "core/fp8_block.h"
#include "io/checkpoint.h"
#include "io/checkpoint_writer.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateDir = "trainer_state";

void write_json(const fs::path& p, const nlohmann::json& j) {
  std::ofstream f(p);
  f << j.dump(2) << "\n";
  f.close();
  if (!f) fail("{}: cannot write", p.string());
}

// Weights in the requested dtype, as the official checkpoint stores them for fp8.
std::vector<TensorToWrite> weight_tensors(const Params& p, const std::string& dtype) {
  std::vector<TensorToWrite> out;
  for (const ParamTensor& t : p.tensors()) {
    const float* src = p.data() + t.offset;
    const int64_t n = t.numel;
    const WeightSpec& w = t.spec;
    if (dtype == "f32" || w.kind == WeightKind::kBias) {
      out.push_back({w.name, DType::F32, w.shape, [src, n](uint8_t* d) { std::memcpy(d, src, static_cast<size_t>(n) * 4); }});
    } else if (dtype == "fp8" && w.fp8_quantized()) {
      const int64_t rows = w.shape[0], cols = w.shape[1];
      const Shape ss = scale_inv_shape(w.shape);
      auto scales = std::make_shared<std::vector<float>>(static_cast<size_t>(ss.numel()));
      out.push_back({w.name, DType::F8_E4M3, w.shape, [=](uint8_t* d) {
                       for (int64_t s = 0; s < ss[0]; ++s) {
                         const int64_t r0 = s * kFp8Block, r = std::min(kFp8Block, rows - r0);
                         quantize_fp8_stripe(src + r0 * cols, r, cols, cols, d + r0 * cols, scales->data() + s * ss[1]);
                       }
                     }});
      out.push_back({scale_inv_name(w.name), DType::F32, ss, [scales](uint8_t* d) {
                       std::memcpy(d, scales->data(), scales->size() * 4);
                     }});
    } else {
      out.push_back({w.name, DType::BF16, w.shape, [src, n](uint8_t* d) {
                       auto* o = reinterpret_cast<uint16_t*>(d);
                       for (int64_t i = 0; i < n; ++i) o[i] = f32_to_bf16(src[i]);
                     }});
    }
  }
  return out;
}

std::vector<TensorToWrite> moment_tensors(const Params& p, const MomentState& m) {
  std::vector<TensorToWrite> out;
  const bool bf = m.dtype == "bf16";
  for (const ParamTensor& t : p.tensors()) {
    if (!t.trainable) continue;
    for (int which = 0; which < 2; ++which) {
      const std::string name = (which == 0 ? "exp_avg." : "exp_avg_sq.") + t.spec.name;
      if (bf) {
        const uint16_t* src = (which == 0 ? m.mb : m.vb).data() + t.offset;
        out.push_back({name, DType::BF16, t.spec.shape, [src, n = t.numel](uint8_t* d) { std::memcpy(d, src, static_cast<size_t>(n) * 2); }});
      } else {
        const float* src = (which == 0 ? m.m : m.v).data() + t.offset;
        out.push_back({name, DType::F32, t.spec.shape, [src, n = t.numel](uint8_t* d) { std::memcpy(d, src, static_cast<size_t>(n) * 4); }});
      }
    }
  }
  return out;
}

void fsync_dir(const fs::path& d) {
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void fsync_files(const fs::path& d) {
  for (const auto& e : fs::recursive_directory_iterator(d)) {
    if (!e.is_regular_file()) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }
  fsync_dir(d);
  fsync_dir(d / kStateDir);
}

}  // namespace

void write_f32_tensors(const std::string& path, const Params& p, const float* buf, const std::string& prefix) {
  std::vector<TensorToWrite> ts;
  for (const ParamTensor& t : p.tensors()) {
    const float* src = buf + t.offset;
    ts.push_back({prefix + t.spec.name, DType::F32, t.spec.shape,
                  [src, n = t.numel](uint8_t* d) { std::memcpy(d, src, static_cast<size_t>(n) * 4); }});
  }
  write_safetensors(path, ts);
}

void save_checkpoint(const SaveRequest& r) {
  const fs::path out = fs::path(r.out_dir);
  const fs::path tmp = fs::path(r.out_dir + ".partial");
  fs::remove_all(tmp);
  fs::create_directories(tmp / kStateDir);
  const Params& p = *r.params;

  auto shards = plan_shards(weight_tensors(p, r.save_dtype), 2ull << 30);
  std::map<std::string, std::string> weight_map;
  uint64_t total = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    write_safetensors((tmp / shards[i].file).string(), shards[i].tensors);
    for (const auto& t : shards[i].tensors) weight_map[t.name] = shards[i].file;
    total += shards[i].bytes();
  }
  write_index(tmp.string(), weight_map, total);
  ModelConfig cfg = p.config();
  cfg.quantization.fp8 = r.save_dtype == "fp8";
  if (cfg.quantization.fp8 && cfg.quantization.activation_scheme.empty()) cfg.quantization.activation_scheme = "dynamic";
  write_json(tmp / "config.json", cfg.to_json());
  if (!r.tokenizer_dir.empty())
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
      const fs::path src = fs::path(r.tokenizer_dir) / name;
      if (fs::exists(src)) fs::copy_file(src, tmp / name, fs::copy_options::overwrite_existing);
    }
  // Exact resume needs the float32 masters; f32 weights are the masters themselves.
  if (r.save_dtype != "f32") write_f32_tensors((tmp / kStateDir / "master.safetensors").string(), p, p.data());
  if (r.moments && !r.moments->empty())
    write_safetensors((tmp / kStateDir / "optimizer.safetensors").string(), moment_tensors(p, *r.moments));
  write_json(tmp / kStateDir / "state.json", r.state);  // last: marks the directory complete
  fsync_files(tmp);

  if (fs::exists(out)) {
    // One atomic exchange: OUT is the old checkpoint or the new one, never a mix.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) != 0)
      fail("{}: cannot swap in the new checkpoint: {}", out.string(), std::strerror(errno));
    fs::remove_all(tmp);
  } else {
    fs::rename(tmp, out);
  }
  fsync_dir(out.parent_path().empty() ? fs::path(".") : out.parent_path());
}

nlohmann::json read_trainer_state(const std::string& out_dir) {
  const fs::path p = fs::path(out_dir) / kStateDir / "state.json";
  if (!fs::exists(p)) return nullptr;
  try {
    return nlohmann::json::parse(read_text_file(p.string()));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed trainer state: {}", p.string(), e.what());
  }
}

void load_trainer_checkpoint(const std::string& out_dir, Params& p, MomentState& mom) {
  const fs::path sd = fs::path(out_dir) / kStateDir;
  const fs::path master = sd / "master.safetensors";
  if (fs::exists(master)) {
    SafetensorsFile f(master.string());
    for (const ParamTensor& t : p.tensors()) {
      if (!t.shares.empty()) continue;  // a copy of the main tensor, which is loaded itself
      const TensorInfo* ti = f.find(t.spec.name);
      if (!ti || ti->dtype != DType::F32 || static_cast<int64_t>(ti->nbytes()) != t.numel * 4)
        fail("{}: master weight '{}' missing or malformed", master.string(), t.spec.name);
      std::memcpy(p.data() + t.offset, f.data(*ti), static_cast<size_t>(t.numel) * 4);
    }
  } else {
    auto ck = Checkpoint::open(out_dir);
    p.load(*ck);
  }
  const fs::path opt = sd / "optimizer.safetensors";
  if (!fs::exists(opt)) return;
  SafetensorsFile f(opt.string());
  for (const ParamTensor& t : p.tensors()) {
    if (!t.trainable) continue;
    for (int which = 0; which < 2; ++which) {
      const std::string name = (which == 0 ? "exp_avg." : "exp_avg_sq.") + t.spec.name;
      const TensorInfo* ti = f.find(name);
      const bool bf = mom.dtype == "bf16";
      if (!ti || ti->dtype != (bf ? DType::BF16 : DType::F32) || static_cast<int64_t>(ti->nbytes()) != t.numel * (bf ? 2 : 4))
        fail("{}: optimizer state '{}' missing or not {} (was --moments changed?)", opt.string(), name, mom.dtype);
      void* dst = bf ? static_cast<void*>((which == 0 ? mom.mb : mom.vb).data() + t.offset)
                     : static_cast<void*>((which == 0 ? mom.m : mom.v).data() + t.offset);
      std::memcpy(dst, f.data(*ti), ti->nbytes());
    }
  }
}

}  // namespace dsv3
