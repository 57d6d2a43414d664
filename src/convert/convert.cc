#include "convert/convert.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "convert/convert_files.h"
#include "convert/convert_kernels.h"
#include "core/error.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "io/checkpoint_writer.h"
#include "model/weight_table.h"

namespace dsv3 {

namespace fs = std::filesystem;

std::optional<ConvertTo> parse_convert_target(std::string_view s) {
  if (s == "bf16" || s == "BF16") return ConvertTo::kBF16;
  if (s == "fp8" || s == "FP8") return ConvertTo::kFP8;
  if (s == "int4" || s == "INT4") return ConvertTo::kINT4;
  return std::nullopt;
}
const char* convert_target_name(ConvertTo t) {
  return t == ConvertTo::kBF16 ? "bf16" : t == ConvertTo::kFP8 ? "fp8" : "int4";
}

namespace {

// The router's bias stays float32 in BF16 checkpoints, as in the official release.
bool keeps_f32(const std::string& name) { return name.ends_with("e_score_correction_bias"); }

using Clock = std::chrono::steady_clock;

// kQuant4 writes X.weight_packed and keeps its scales for the kScale4Out (X.weight_scale) that
// follows it; kShape4Out writes X.weight_shape.
enum class Op { kCopy, kDequant, kQuant, kScaleOut, kToBf16, kQuant4, kScale4Out, kShape4Out };

struct PlannedTensor {
  std::string name;
  DType dtype;
  Shape shape;
  Op op;
  const TensorRef* src = nullptr;    // the input tensor (for kScaleOut: the weight it belongs to)
  const TensorRef* scale = nullptr;  // kDequant, kQuant4 of FP8: the input's _scale_inv (possibly in another shard)
  uint64_t nbytes() const { return static_cast<uint64_t>(shape.numel()) * dtype_size(dtype); }
};

struct PlannedShard {
  std::string file;
  const SafetensorsFile* input = nullptr;
  std::vector<PlannedTensor> tensors;
  uint64_t in_bytes = 0, out_bytes = 0;
};

std::string file_of(const TensorRef& r) { return fs::path(r.file->path()).filename().string(); }

// Output tensors of every input shard, in the input's order. Tensors keep their shard.
std::vector<PlannedShard> plan(const ModelConfig& cfg, const Checkpoint& ck, const ConvertOptions& opt) {
  const ConvertTo to = opt.to;
  std::map<std::string, bool> table;  // name -> fp8_quantized
  std::set<std::string> int4;         // weights that become int4
  for_each_weight(cfg, [&](const WeightSpec& w) {
    table[w.name] = w.fp8_quantized();
    if (to == ConvertTo::kINT4 && w.fp8_quantized() && (opt.int4_all || w.expert >= 0)) int4.insert(w.name);
  });
  std::map<const SafetensorsFile*, size_t> shard_index;
  std::vector<PlannedShard> shards;
  for (const auto& s : ck.shards()) {
    shard_index[s.get()] = shards.size();
    shards.push_back({fs::path(s->path()).filename().string(), s.get(), {}, 0, 0});
  }
  // Scales consumed by dequantisation: dropped from the output, read through their weight.
  std::set<std::string> consumed;
  int extras = 0;
  auto note_extra = [&](const TensorRef& r, const char* what) {
    if (++extras <= 5) log_warn("{}: tensor '{}' is not in the weight table; {}", file_of(r), r.info->name, what);
  };
  if (to == ConvertTo::kBF16 || to == ConvertTo::kINT4) {
    for (const auto& r : ck.tensors()) {
      if (r.info->dtype != DType::F8_E4M3 || (to == ConvertTo::kINT4 && !int4.count(r.info->name))) continue;
      const TensorRef* s = ck.find(scale_inv_name(r.info->name));
      if (r.info->shape.ndim == 2 && s && s->info->dtype == DType::F32 &&
          s->info->shape == scale_inv_shape(r.info->shape))
        consumed.insert(s->info->name);
    }
  }
  for (const auto& r : ck.tensors()) {
    const TensorInfo& t = *r.info;
    PlannedShard& ps = shards[shard_index.at(r.file)];
    if (consumed.count(t.name)) continue;
    auto it = table.find(t.name);
    const bool in_table = it != table.end();
    PlannedTensor p{t.name, t.dtype, t.shape, Op::kCopy, &r, nullptr};
    if (int4.count(t.name)) {
      const TensorRef* s = t.dtype == DType::F8_E4M3 ? ck.find(scale_inv_name(t.name)) : nullptr;
      if (t.dtype == DType::F8_E4M3 && !(s && consumed.count(s->info->name)))
        fail("{}: FP8 weight '{}' has no usable '{}'", file_of(r), t.name, scale_inv_name(t.name));
      if (s) ps.in_bytes += s->info->nbytes();
      const int64_t R = t.shape[0], C = t.shape[1];
      const PlannedTensor outs[] = {
          {int4_packed_name(t.name), DType::I32, Shape{R, (C + 7) / 8}, Op::kQuant4, &r, s},
          {int4_scale_name(t.name), DType::BF16, Shape{R, (C + opt.group - 1) / opt.group}, Op::kScale4Out, &r, nullptr},
          {int4_shape_name(t.name), DType::I32, Shape{2}, Op::kShape4Out, &r, nullptr}};
      ps.in_bytes += t.nbytes();
      for (const PlannedTensor& o : outs) {
        ps.out_bytes += o.nbytes();
        ps.tensors.push_back(o);
      }
      continue;
    }
    if (to == ConvertTo::kBF16 && t.dtype == DType::F8_E4M3) {
      const TensorRef* s = ck.find(scale_inv_name(t.name));
      if (s && consumed.count(s->info->name)) {
        p.op = Op::kDequant;
        p.dtype = DType::BF16;
        p.scale = s;
        ps.in_bytes += s->info->nbytes();
        if (!in_table) note_extra(r, "dequantised with its scale");
      } else {
        note_extra(r, "no usable _scale_inv, copied unchanged");
      }
    } else if (to == ConvertTo::kBF16 && t.dtype == DType::F32 && in_table && !keeps_f32(t.name)) {
      p.op = Op::kToBf16;  // float32 weights (a trainer's masters): rounded to BF16
      p.dtype = DType::BF16;
    } else if (to == ConvertTo::kFP8 && in_table && it->second) {
      if (ck.find(scale_inv_name(t.name)))
        fail("{}: '{}' already exists although '{}' is not FP8", ck.dir(), scale_inv_name(t.name), t.name);
      p.op = Op::kQuant;
      p.dtype = DType::F8_E4M3;
    } else if (!in_table && !(t.name.ends_with("_scale_inv") && table.count(t.name.substr(0, t.name.size() - 10)))) {
      note_extra(r, "copied unchanged");  // (the _scale_inv of an FP8 weight kept as it is is expected)
    }
    ps.in_bytes += t.nbytes();
    ps.out_bytes += p.nbytes();
    ps.tensors.push_back(p);
    if (p.op == Op::kQuant) {
      PlannedTensor sc{scale_inv_name(t.name), DType::F32, scale_inv_shape(t.shape), Op::kScaleOut, &r, nullptr};
      ps.out_bytes += sc.nbytes();
      ps.tensors.push_back(sc);
    }
  }
  if (extras > 5) log_warn("{}: {} tensors not in the weight table in all", ck.dir(), extras);
  return shards;
}

// A shard of an earlier run of this conversion is complete when its final name exists, its
// header parses and it lists exactly the planned tensors (names, dtypes, shapes).
bool shard_complete(const std::string& path, const PlannedShard& ps) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {
    SafetensorsFile f(path);
    if (f.tensors().size() != ps.tensors.size()) return false;
    for (const auto& p : ps.tensors) {
      const TensorInfo* t = f.find(p.name);
      if (!t || t->dtype != p.dtype || !(t->shape == p.shape)) return false;
    }
    return true;
  } catch (const Error&) {
    return false;
  }
}

ConvertState make_state(const std::string& in_canon, const ConvertOptions& opt, const Checkpoint& ck) {
  ConvertState st;
  st.input = in_canon;
  st.to = convert_target_name(opt.to);
  if (opt.to == ConvertTo::kINT4) st.to += fmt::format("-group{}{}", opt.group, opt.int4_all ? "-all" : "");
  for (const auto& s : ck.shards()) {
    std::error_code ec;
    const auto mt = fs::last_write_time(s->path(), ec).time_since_epoch().count();
    st.shards[fs::path(s->path()).filename().string()] = fmt::format("{}:{}", s->file_size(), mt);
  }
  return st;
}

bool dir_nonempty(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && fs::directory_iterator(p, ec) != fs::directory_iterator();
}

// Progress on stderr: a live line (bytes/s, ETA) on a terminal, one line per shard otherwise.
class Progress {
 public:
  Progress(uint64_t total, bool live) : total_(total), live_(live && log_level() >= LogLevel::kInfo) {}
  void set_file(const std::string& f) { file_ = f; }
  void add(uint64_t bytes) {
    done_ += bytes;
    if (!live_) return;
    const auto now = Clock::now();
    if (now - last_ < std::chrono::milliseconds(200) && done_ < total_) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    const double rate = s > 0 ? done_ / s : 0;
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    fmt::print(stderr, "\rconvert: {:.2f}/{:.2f} GB  {:.0f} MB/s  ETA {}:{:02d}  {}   ", done_ / 1e9, total_ / 1e9,
               rate / 1e6, static_cast<int>(eta) / 60, static_cast<int>(eta) % 60, file_);
    std::fflush(stderr);
  }
  void shard_done(const PlannedShard& ps, size_t i, size_t n, double secs) {
    if (live_) return;
    log_info("convert: wrote {} ({}/{}, {:.1f} MB in, {:.1f} MB out, {:.1f} s, {:.0f} MB/s)", ps.file, i + 1, n,
             ps.in_bytes / 1e6, ps.out_bytes / 1e6, secs, secs > 0 ? ps.in_bytes / 1e6 / secs : 0.0);
  }
  void finish() {
    if (live_) fmt::print(stderr, "\n");
  }

 private:
  uint64_t total_, done_ = 0;
  bool live_;
  std::string file_;
  Clock::time_point start_ = Clock::now(), last_{};
};

// The fill callbacks of one shard. Inputs are mmap'd; each tensor's input pages (and its
// scale's) are released as soon as they are converted, so RSS stays near one tensor.
std::vector<TensorToWrite> shard_writes(const PlannedShard& ps, int64_t group4, Progress& progress) {
  std::vector<TensorToWrite> out;
  std::shared_ptr<std::vector<float>> scales;  // of the last quantised weight, for its _scale_inv
  std::shared_ptr<std::vector<uint16_t>> scales4;  // of the last int4 weight, for its weight_scale
  for (const PlannedTensor& p : ps.tensors) {
    const TensorRef* src = p.src;
    const SafetensorsFile* f = src->file;
    const ReleaseFn release = [f](const void* q, size_t n) { f->release(q, n); };
    std::function<void(uint8_t*)> fill;
    switch (p.op) {
      case Op::kCopy:
        fill = [=, &progress](uint8_t* dst) {
          copy_bytes(src->data(), src->info->nbytes(), dst, release);
          f->release(src->data(), src->info->nbytes());
          progress.add(src->info->nbytes());
        };
        break;
      case Op::kDequant: {
        const TensorRef* sc = p.scale;
        fill = [=, &progress](uint8_t* dst) {
          const float* s = reinterpret_cast<const float*>(sc->data());
          dequantize_fp8_to_bf16(src->data(), s, p.shape[0], p.shape[1], reinterpret_cast<uint16_t*>(dst), release);
          f->release(src->data(), src->info->nbytes());
          sc->file->release(sc->data(), sc->info->nbytes());
          progress.add(src->info->nbytes() + sc->info->nbytes());
        };
        break;
      }
      case Op::kQuant:
        scales = std::make_shared<std::vector<float>>();
        fill = [=, &progress](uint8_t* dst) {
          scales->resize(static_cast<size_t>(scale_inv_shape(p.shape).numel()));
          quantize_to_fp8(src->info->dtype, src->data(), p.shape[0], p.shape[1], dst, scales->data(), release);
          f->release(src->data(), src->info->nbytes());
          progress.add(src->info->nbytes());
        };
        break;
      case Op::kToBf16:
        fill = [=, &progress](uint8_t* dst) {
          const float* x = reinterpret_cast<const float*>(src->data());
          uint16_t* d = reinterpret_cast<uint16_t*>(dst);
          for (int64_t i = 0; i < p.shape.numel(); ++i) d[i] = f32_to_bf16(x[i]);
          f->release(src->data(), src->info->nbytes());
          progress.add(src->info->nbytes());
        };
        break;
      case Op::kScaleOut:
        fill = [scales](uint8_t* dst) {
          std::copy(scales->begin(), scales->end(), reinterpret_cast<float*>(dst));
          std::vector<float>().swap(*scales);
        };
        break;
      case Op::kQuant4: {
        scales4 = std::make_shared<std::vector<uint16_t>>();
        const TensorRef* sc = p.scale;
        const int64_t group = group4;
        const auto keep = scales4;
        fill = [=, &progress](uint8_t* dst) {
          const int64_t R = src->info->shape[0], C = src->info->shape[1];
          keep->resize(static_cast<size_t>(R * ((C + group - 1) / group)));
          const float* s = sc ? reinterpret_cast<const float*>(sc->data()) : nullptr;
          quantize_to_int4(src->info->dtype, src->data(), s, R, C, group, reinterpret_cast<uint32_t*>(dst), keep->data(),
                           release);
          f->release(src->data(), src->info->nbytes());
          if (sc) sc->file->release(sc->data(), sc->info->nbytes());
          progress.add(src->info->nbytes() + (sc ? sc->info->nbytes() : 0));
        };
        break;
      }
      case Op::kScale4Out: {
        const auto keep = scales4;
        fill = [keep](uint8_t* dst) {
          std::memcpy(dst, keep->data(), keep->size() * 2);
          std::vector<uint16_t>().swap(*keep);
        };
        break;
      }
      case Op::kShape4Out:
        fill = [src](uint8_t* dst) {
          const int32_t dims[2] = {static_cast<int32_t>(src->info->shape[0]), static_cast<int32_t>(src->info->shape[1])};
          std::memcpy(dst, dims, sizeof dims);
        };
        break;
    }
    out.push_back({p.name, p.dtype, p.shape, std::move(fill)});
  }
  return out;
}

}  // namespace

ConvertResult convert_checkpoint(const std::string& in_dir, const std::string& out_dir, const ConvertOptions& opt) {
  const auto t0 = Clock::now();
  std::error_code ec;
  if (!fs::is_directory(in_dir, ec)) fail("{}: not a directory", in_dir);
  const fs::path in_canon = fs::canonical(in_dir, ec);
  if (ec) fail("{}: cannot resolve: {}", in_dir, ec.message());
  const fs::path out_canon = fs::weakly_canonical(fs::absolute(out_dir), ec);
  if (ec) fail("{}: cannot resolve: {}", out_dir, ec.message());
  if (in_canon == out_canon) fail("{}: input and output are the same directory; choose another OUT", out_dir);
  if (fs::exists(out_canon, ec) && !fs::is_directory(out_canon, ec)) fail("{}: exists and is not a directory", out_dir);

  // Validate the input exactly as `dsv3 info` does before anything is written.
  ModelFiles m = open_model_files(in_dir);
  const Checkpoint& ck = *m.checkpoint;
  bool has_fp8 = false, has_int4 = false;
  for (const auto& r : ck.tensors()) {
    has_fp8 |= r.info->dtype == DType::F8_E4M3;
    has_int4 |= r.info->name.ends_with(".weight_packed");
  }
  if (has_int4)
    fail("{}: holds int4 (compressed-tensors pack-quantized) weights; converting them is not supported", in_dir);
  if (opt.to == ConvertTo::kINT4 && opt.group != 32 && opt.group != 64 && opt.group != 128)
    fail("--group must be 32, 64 or 128 (got {})", opt.group);
  if (opt.to == ConvertTo::kFP8 && has_fp8)
    fail("{}: already holds F8_E4M3 weights: it is already FP8 (convert --to bf16 first to requantise)", in_dir);
  if (!ck.has_index() && ck.shards().size() != 1)
    fail("{}: several *.safetensors files but no model.safetensors.index.json", in_dir);
  const std::vector<PlannedShard> shards = plan(m.config, ck, opt);
  // F32 weights to cast are whatever the plan casts (the rule lives in plan() alone).
  bool casts_f32 = false;
  for (const auto& ps : shards)
    for (const auto& p : ps.tensors) casts_f32 |= p.op == Op::kToBf16;
  if (opt.to == ConvertTo::kBF16 && !has_fp8 && !casts_f32)
    fail("{}: has no F8_E4M3 or F32 weights: it is already BF16, nothing to convert", in_dir);

  // Resume only an unfinished run of this very conversion (its state file matches).
  const ConvertState state = make_state(in_canon.string(), opt, ck);
  const fs::path state_path = out_canon / kStateFile;
  bool resume = false;
  if (dir_nonempty(out_canon)) {
    ConvertState old;
    resume = fs::exists(state_path, ec) && ConvertState::parse(read_text_file(state_path.string()), &old) &&
             old == state;
    if (!resume && !opt.force)
      fail("{}: exists and is not empty; pass --force to write into it (files with the same names are replaced)",
           out_dir);
  }
  std::vector<bool> done(shards.size(), false);
  uint64_t need = 0, largest = 0, freed = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string path = (out_canon / shards[i].file).string();
    if (shards[i].tensors.empty()) continue;
    done[i] = resume && shard_complete(path, shards[i]);
    if (done[i]) continue;
    need += shards[i].out_bytes;
    largest = std::max(largest, shards[i].out_bytes);
    if (fs::is_regular_file(path, ec)) freed += fs::file_size(path, ec);
  }
  // Fail before writing anything when the shards cannot fit (a replaced shard frees its space
  // only after its successor is complete, hence the largest one counted twice).
  fs::path probe = out_canon;
  while (!fs::exists(probe, ec) && probe.has_parent_path() && probe != probe.parent_path()) probe = probe.parent_path();
  const fs::space_info sp = fs::space(probe, ec);
  const uint64_t want = need > freed ? need - freed + std::min(largest, freed) : largest;
  if (!ec && need > 0 && sp.available < want)
    fail("{}: not enough disk space: the converted shards need {:.2f} GB, {:.2f} GB available", out_dir, want / 1e9,
         sp.available / 1e9);

  fs::create_directories(out_canon, ec);
  if (ec) fail("{}: cannot create: {}", out_dir, ec.message());
  write_file_atomic(state_path.string(), state.to_json());
  if (opt.threads > 0) omp_set_num_threads(opt.threads);

  ConvertResult res;
  uint64_t todo = 0;
  for (size_t i = 0; i < shards.size(); ++i)
    if (!done[i]) todo += shards[i].in_bytes;
  const bool live = opt.progress == 1 || (opt.progress < 0 && ::isatty(STDERR_FILENO));
  Progress progress(todo, live);
  std::map<std::string, std::string> weight_map;
  uint64_t total_size = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const PlannedShard& ps = shards[i];
    const std::string path = (out_canon / ps.file).string();
    for (const auto& t : ps.tensors) weight_map[t.name] = ps.file;
    total_size += ps.out_bytes;
    fs::remove(path + ".partial", ec);  // left by a killed run
    if (ps.tensors.empty()) {
      log_info("convert: {} holds only scales; no output shard", ps.file);
      continue;
    }
    if (done[i]) {
      ++res.shards_skipped;
      log_info("convert: {} already complete, skipped", ps.file);
      continue;
    }
    if (opt.stop_after_shards >= 0 && res.shards_written >= static_cast<size_t>(opt.stop_after_shards))
      fail("convert: stopped after {} shards (simulated interruption)", res.shards_written);
    const auto ts = Clock::now();
    std::map<std::string, std::string> meta = ps.input->metadata();
    if (meta.empty()) meta = {{"format", "pt"}};
    progress.set_file(ps.file);
    write_safetensors(path, shard_writes(ps, opt.group, progress), meta);
    progress.shard_done(ps, i, shards.size(), std::chrono::duration<double>(Clock::now() - ts).count());
    ++res.shards_written;
    res.input_bytes += ps.in_bytes;
    res.output_bytes += ps.out_bytes;
  }
  progress.finish();

  const std::string skip = out_canon.string().rfind(in_canon.string() + "/", 0) == 0 ? out_canon.string() : "";
  copy_aux_files(in_canon.string(), out_canon.string(), skip);
  write_index(out_canon.string(), weight_map, total_size);
  write_file_atomic((out_canon / "config.json").string(),
                    converted_config((in_canon / "config.json").string(), opt));
  fs::remove(state_path, ec);
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return res;
}

}  // namespace dsv3
