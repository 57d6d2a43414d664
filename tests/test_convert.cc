// dsv3 convert on the v3-fp8 fixture (2 shards, some scales in the other shard, partial edge
// blocks). Every value is checked against an independent scalar reference written here from
// the format definitions (E4M3 decoded by formula, BF16 rounding by nearest distance, E4M3
// encoding by searching the representable values), not against the library's own kernels.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "convert/convert.h"
#include "convert/convert_kernels.h"
#include "core/fp8_block.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "model/weight_table.h"

namespace fs = std::filesystem;
using namespace dsv3;

namespace {

const std::string kFixture = std::string(DSV3_FIXTURES) + "/v3-fp8";

// ---- independent references ----
double e4m3_value(uint8_t v) {  // torch.float8_e4m3fn by formula
  const int s = v >> 7, e = (v >> 3) & 15, m = v & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? std::ldexp(m, -9) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}
uint16_t bf16_rne(float f) {  // nearest of the two neighbouring BF16 values, ties to even
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t lo = static_cast<uint16_t>(u >> 16), hi = static_cast<uint16_t>(lo + 1);
  const double vlo = std::bit_cast<float>(static_cast<uint32_t>(lo) << 16);
  const double vhi = std::bit_cast<float>(static_cast<uint32_t>(hi) << 16);
  const double dlo = std::fabs(f - vlo), dhi = std::fabs(vhi - f);
  if (dlo != dhi) return dlo < dhi ? lo : hi;
  return (lo & 1) ? hi : lo;
}
float bf16_value(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
uint8_t e4m3_rne_saturating(float x) {  // nearest of codes 0..126 (0 .. 448), ties to even code
  static const std::vector<double> pos = [] {
    std::vector<double> v;
    for (int c = 0; c <= 126; ++c) v.push_back(e4m3_value(static_cast<uint8_t>(c)));
    return v;
  }();
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 448.0) return sign | 126;
  const size_t hi = std::lower_bound(pos.begin(), pos.end(), a) - pos.begin();
  if (pos[hi] == a || hi == 0) return sign | static_cast<uint8_t>(hi);
  const size_t lo = hi - 1;
  const double dl = a - pos[lo], dh = pos[hi] - a;
  const size_t c = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
  return sign | static_cast<uint8_t>(c);
}

// ---- helpers ----
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("dsv3_test_convert_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) { return read_text_file(p.string()); }
nlohmann::json json_of(const fs::path& p) { return nlohmann::json::parse(slurp(p)); }

// The fixture plus the small files a real release carries, in a writable place.
fs::path make_input(const fs::path& root) {
  const fs::path in = root / "in";
  fs::create_directories(in / "inference");
  for (const auto& e : fs::directory_iterator(kFixture)) fs::copy_file(e.path(), in / e.path().filename());
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    const fs::path tok = fs::path(DSV3_TOKENIZER_DIR) / f;
    if (fs::exists(tok))
      fs::copy_file(tok, in / f);
    else
      std::ofstream(in / f) << R"({"stand-in": ")" << f << "\"}";
  }
  std::ofstream(in / "generation_config.json") << R"({"bos_token_id": 0, "eos_token_id": 1, "do_sample": true})";
  std::ofstream(in / "inference" / "fp8_cast_bf16.py") << "# the official converter\n";
  fs::permissions(in, fs::perms::owner_all, fs::perm_options::add);
  for (const auto& e : fs::recursive_directory_iterator(in))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return in;
}

ConvertOptions to(ConvertTo t) {
  ConvertOptions o;
  o.to = t;
  o.progress = 0;
  return o;
}

void expect_same_files(const fs::path& a, const fs::path& b, const char* name) {
  ASSERT_TRUE(fs::exists(b / name)) << name;
  EXPECT_EQ(slurp(a / name), slurp(b / name)) << name;
}

void check_index(const fs::path& dir, const Checkpoint& ck, bool expect_scales) {
  const auto idx = json_of(dir / "model.safetensors.index.json");
  uint64_t total = 0;
  for (const auto& r : ck.tensors()) total += r.info->nbytes();
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), total);
  size_t scales = 0;
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    const std::string& n = it.key();
    scales += n.size() > 10 && n.compare(n.size() - 10, 10, "_scale_inv") == 0;
    const TensorRef* r = ck.find(n);
    ASSERT_NE(r, nullptr) << n;
    EXPECT_EQ(fs::path(r->file->path()).filename().string(), it.value().get<std::string>());
  }
  EXPECT_EQ(idx["weight_map"].size(), ck.tensors().size());
  if (expect_scales)
    EXPECT_GT(scales, 0u);
  else
    EXPECT_EQ(scales, 0u);
}

// Checks out (BF16) against the FP8 input, value by value.
void check_bf16_output(const fs::path& in, const fs::path& out) {
  auto src = Checkpoint::open(in.string());
  auto dst = Checkpoint::open(out.string());
  size_t dequantised = 0;
  for (const auto& r : src->tensors()) {
    const std::string& name = r.info->name;
    const bool is_scale = name.size() > 10 && name.compare(name.size() - 10, 10, "_scale_inv") == 0;
    const TensorRef* o = dst->find(name);
    if (is_scale) {
      EXPECT_EQ(o, nullptr) << name;
      continue;
    }
    ASSERT_NE(o, nullptr) << name;
    ASSERT_TRUE(o->info->shape == r.info->shape) << name;
    // Shard names are kept: every tensor stays in the shard it came from.
    EXPECT_EQ(fs::path(o->file->path()).filename(), fs::path(r.file->path()).filename()) << name;
    if (r.info->dtype != DType::F8_E4M3) {
      ASSERT_EQ(o->info->dtype, r.info->dtype) << name;
      EXPECT_EQ(0, std::memcmp(o->data(), r.data(), r.info->nbytes())) << name;
      continue;
    }
    ASSERT_EQ(o->info->dtype, DType::BF16) << name;
    const TensorRef* s = src->find(scale_inv_name(name));
    ASSERT_NE(s, nullptr);
    const int64_t rows = r.info->shape[0], cols = r.info->shape[1], sc = (cols + 127) / 128;
    const auto* q = r.data();
    const auto* sv = reinterpret_cast<const float*>(s->data());
    const auto* got = reinterpret_cast<const uint16_t*>(o->data());
    int64_t bad = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const float prod = static_cast<float>(e4m3_value(q[i * cols + j])) * sv[(i / 128) * sc + j / 128];
        bad += got[i * cols + j] != bf16_rne(prod);
      }
    EXPECT_EQ(bad, 0) << name;
    ++dequantised;
  }
  EXPECT_EQ(dequantised, 232u);
  check_index(out, *dst, false);
}

}  // namespace

TEST(Convert, Fp8ToBf16AndBack) {
  TempDir t;
  const fs::path in = make_input(t.path), bf = t.path / "bf16", f8 = t.path / "fp8";
  const ConvertResult r = convert_checkpoint(in.string(), bf.string(), to(ConvertTo::kBF16));
  EXPECT_EQ(r.shards_written, 2u);
  check_bf16_output(in, bf);

  // config.json: the same object without quantization_config.
  auto cin = json_of(in / "config.json"), cbf = json_of(bf / "config.json");
  ASSERT_TRUE(cin.contains("quantization_config"));
  EXPECT_FALSE(cbf.contains("quantization_config"));
  cin.erase("quantization_config");
  EXPECT_EQ(cin, cbf);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                        "inference/fp8_cast_bf16.py"})
    expect_same_files(in, bf, f);
  EXPECT_FALSE(fs::exists(bf / ".dsv3-convert-state.json"));
  EXPECT_NO_THROW(open_model_files(bf.string()));  // what `dsv3 info` checks

  // Back to FP8: the original's tensor set, shapes and dtypes; values from an independent quantiser.
  convert_checkpoint(bf.string(), f8.string(), to(ConvertTo::kFP8));
  auto orig = Checkpoint::open(in.string());
  auto b = Checkpoint::open(bf.string());
  auto q = Checkpoint::open(f8.string());
  ASSERT_EQ(q->tensors().size(), orig->tensors().size());
  size_t quantised = 0;
  for (const auto& r0 : orig->tensors()) {
    const std::string& name = r0.info->name;
    const TensorRef* o = q->find(name);
    ASSERT_NE(o, nullptr) << name;
    EXPECT_TRUE(o->info->shape == r0.info->shape) << name;
    EXPECT_EQ(o->info->dtype, r0.info->dtype) << name;
    if (o->info->dtype != DType::F8_E4M3) continue;
    const TensorRef* s = q->find(scale_inv_name(name));
    ASSERT_NE(s, nullptr);
    // The scale sits right after its weight, in the same shard.
    EXPECT_EQ(s->file, o->file);
    EXPECT_EQ(s->info->begin, o->info->end);
    const TensorRef* src = b->find(name);
    const int64_t rows = o->info->shape[0], cols = o->info->shape[1], sc = (cols + 127) / 128;
    const auto* x = reinterpret_cast<const uint16_t*>(src->data());
    const auto* got = o->data();
    const auto* gs = reinterpret_cast<const float*>(s->data());
    int64_t bad = 0, bad_scale = 0;
    for (int64_t bi = 0; bi < rows; bi += 128)
      for (int64_t bj = 0; bj < cols; bj += 128) {
        const int64_t ie = std::min(rows, bi + 128), je = std::min(cols, bj + 128);
        float amax = 0;
        for (int64_t i = bi; i < ie; ++i)
          for (int64_t j = bj; j < je; ++j) amax = std::max(amax, std::fabs(bf16_value(x[i * cols + j])));
        const float scale = std::max(amax, 1e-12f) / 448.0f;
        bad_scale += std::bit_cast<uint32_t>(gs[(bi / 128) * sc + bj / 128]) != std::bit_cast<uint32_t>(scale);
        for (int64_t i = bi; i < ie; ++i)
          for (int64_t j = bj; j < je; ++j) bad += got[i * cols + j] != e4m3_rne_saturating(bf16_value(x[i * cols + j]) / scale);
      }
    EXPECT_EQ(bad, 0) << name;
    EXPECT_EQ(bad_scale, 0) << name;
    ++quantised;
  }
  EXPECT_EQ(quantised, 232u);
  check_index(f8, *q, true);
  auto c8 = json_of(f8 / "config.json");
  EXPECT_EQ(c8["quantization_config"], nlohmann::json::parse(R"({"activation_scheme":"dynamic","fmt":"e4m3",
      "quant_method":"fp8","weight_block_size":[128,128]})"));
  EXPECT_EQ(c8, json_of(in / "config.json"));
  expect_same_files(in, f8, "tokenizer.json");
  EXPECT_NO_THROW(open_model_files(f8.string()));
}

TEST(Convert, RefusesToOverwriteOrConvertInPlace) {
  TempDir t;
  const fs::path in = make_input(t.path), out = t.path / "out";
  fs::create_directories(out);
  std::ofstream(out / "keep.txt") << "precious";
  const auto before = fs::last_write_time(out / "keep.txt");
  EXPECT_THROW(convert_checkpoint(in.string(), out.string(), to(ConvertTo::kBF16)), Error);
  EXPECT_EQ(slurp(out / "keep.txt"), "precious");
  EXPECT_EQ(fs::last_write_time(out / "keep.txt"), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(out), fs::directory_iterator()), 1);

  // IN == OUT: directly, through a relative path and through a symlink.
  const auto in_before = fs::last_write_time(in / "model-00001-of-00002.safetensors");
  EXPECT_THROW(convert_checkpoint(in.string(), in.string(), to(ConvertTo::kBF16)), Error);
  EXPECT_THROW(convert_checkpoint(in.string(), (in / ".." / "in").string(), to(ConvertTo::kBF16)), Error);
  fs::create_directory_symlink(in, t.path / "link");
  auto o = to(ConvertTo::kBF16);
  o.force = true;
  EXPECT_THROW(convert_checkpoint((t.path / "link").string(), in.string(), o), Error);
  EXPECT_THROW(convert_checkpoint(in.string(), (t.path / "link").string(), o), Error);
  EXPECT_EQ(fs::last_write_time(in / "model-00001-of-00002.safetensors"), in_before);

  // Converting to the dtype the input already has.
  EXPECT_THROW(convert_checkpoint(in.string(), (t.path / "x").string(), to(ConvertTo::kFP8)), Error);
  EXPECT_FALSE(fs::exists(t.path / "x"));

  // --force writes into the non-empty directory and leaves unrelated files alone.
  convert_checkpoint(in.string(), out.string(), o);
  EXPECT_EQ(slurp(out / "keep.txt"), "precious");
  EXPECT_NO_THROW(open_model_files(out.string()));
}

TEST(Convert, ResumesAnInterruptedRun) {
  TempDir t;
  const fs::path in = make_input(t.path), ref = t.path / "ref", out = t.path / "out";
  convert_checkpoint(in.string(), ref.string(), to(ConvertTo::kBF16));

  auto o = to(ConvertTo::kBF16);
  o.stop_after_shards = 1;
  EXPECT_THROW(convert_checkpoint(in.string(), out.string(), o), Error);
  const fs::path s1 = out / "model-00001-of-00002.safetensors", s2 = out / "model-00002-of-00002.safetensors";
  ASSERT_TRUE(fs::exists(s1));
  EXPECT_FALSE(fs::exists(s2));
  EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(out / "config.json"));
  // What a kill in the middle of shard 2 leaves: its temporary file, half written.
  std::ofstream(s2.string() + ".partial") << "half a shard";
  const auto s1_time = fs::last_write_time(s1);

  const ConvertResult r = convert_checkpoint(in.string(), out.string(), to(ConvertTo::kBF16));
  EXPECT_EQ(r.shards_skipped, 1u);
  EXPECT_EQ(r.shards_written, 1u);
  EXPECT_EQ(fs::last_write_time(s1), s1_time);
  EXPECT_FALSE(fs::exists(s2.string() + ".partial"));
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                        "model.safetensors.index.json", "config.json", "tokenizer.json"})
    expect_same_files(ref, out, f);
  check_bf16_output(in, out);

  // A finished output is not resumed: a rerun without --force is refused.
  EXPECT_THROW(convert_checkpoint(in.string(), out.string(), to(ConvertTo::kBF16)), Error);
}

TEST(Convert, DamagedShardIsRewrittenOnResume) {
  TempDir t;
  const fs::path in = make_input(t.path), out = t.path / "out";
  auto o = to(ConvertTo::kBF16);
  o.stop_after_shards = 1;
  EXPECT_THROW(convert_checkpoint(in.string(), out.string(), o), Error);
  // A shard under its final name that does not list the planned tensors is not trusted.
  const fs::path s1 = out / "model-00001-of-00002.safetensors";
  fs::resize_file(s1, fs::file_size(s1) / 2);
  const ConvertResult r = convert_checkpoint(in.string(), out.string(), to(ConvertTo::kBF16));
  EXPECT_EQ(r.shards_written, 2u);
  check_bf16_output(in, out);
}

// The table-driven kernel against its scalar twin (core's dequantize_fp8_rows + f32_to_bf16) on
// every E4M3 code (NaN included), extreme scales (subnormal, overflowing to inf) and shapes
// that are not multiples of 128.
TEST(Convert, DequantKernelMatchesScalarReference) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {130, 257}, {256, 128}, {300, 1000}}) {
    const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    std::vector<uint8_t> q(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<uint8_t>((i * 2654435761u) >> 7);
    std::vector<float> s(static_cast<size_t>(sr * sc));
    const float picks[] = {1e-40f, 3e-3f, 1.0f, 7.5e35f, 1e38f};
    for (size_t i = 0; i < s.size(); ++i) s[i] = picks[i % 5];
    std::vector<uint16_t> got(q.size());
    dequantize_fp8_to_bf16(q.data(), s.data(), rows, cols, got.data(), nullptr);
    std::vector<float> f(q.size());
    dequantize_fp8_rows(q.data(), s.data(), cols, 0, rows, f.data());
    int64_t bad = 0;
    for (size_t i = 0; i < q.size(); ++i) bad += got[i] != f32_to_bf16(f[i]);
    EXPECT_EQ(bad, 0) << rows << "x" << cols;
  }
}
