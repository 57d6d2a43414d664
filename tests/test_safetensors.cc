// safetensors header parsing (io/safetensors.h): crafted valid and invalid headers, a round trip
// through write_safetensors read back by hand, and a deterministic mutation fuzz of the parser
// (the same entry point as tests/fuzz/fuzz_safetensors_header.cc) that runs under ASan/UBSan in CI.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

// [u64 LE length][header][data_bytes zero bytes]
std::vector<uint8_t> image(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> v(8 + header.size() + data_bytes, 0);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) v[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(v.data() + 8, header.data(), header.size());
  return v;
}

SafetensorsHeader parse(const std::vector<uint8_t>& v) {
  return parse_safetensors_header(v.data(), v.size(), v.size(), "x.safetensors");
}

// Expects a dsv3::Error naming the file whose message contains `needle`; one line.
void expect_error(const std::vector<uint8_t>& v, const std::string& needle) {
  try {
    parse(v);
    ADD_FAILURE() << "no error; wanted '" << needle << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("x.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

const char* kValid =
    R"({"__metadata__":{"format":"pt"},)"
    R"("b":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},)"
    R"("a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
    R"("s":{"dtype":"F8_E4M3","shape":[],"data_offsets":[32,33]},)"
    R"("z":{"dtype":"I64","shape":[0,5],"data_offsets":[33,33]}})";

TEST(SafetensorsHeader, ParsesValidHeader) {
  const auto v = image(kValid, 33);
  const auto h = parse(v);
  EXPECT_EQ(h.data_start, 8 + std::strlen(kValid));
  ASSERT_EQ(h.tensors.size(), 4u);
  // Sorted by data offset.
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[0].dtype, DType::BF16);
  EXPECT_EQ(h.tensors[0].shape, Shape({4}));
  EXPECT_EQ(h.tensors[1].name, "b");
  EXPECT_EQ(h.tensors[1].shape, Shape({2, 3}));
  EXPECT_EQ(h.tensors[1].begin, 8u);
  EXPECT_EQ(h.tensors[1].end, 32u);
  EXPECT_EQ(h.tensors[2].name, "s");
  EXPECT_EQ(h.tensors[2].shape.ndim, 0);  // scalar: one element
  EXPECT_EQ(h.tensors[3].name, "z");
  EXPECT_EQ(h.tensors[3].nbytes(), 0u);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  // Trailing bytes after the last tensor are allowed; so is an empty header object.
  EXPECT_NO_THROW(parse(image(kValid, 100)));
  EXPECT_TRUE(parse(image("{}", 0)).tensors.empty());
  EXPECT_TRUE(parse(image("{}      ", 0)).tensors.empty());  // HF pads with spaces
}

TEST(SafetensorsHeader, LengthField) {
  expect_error({}, "truncated");
  expect_error({1, 0, 0}, "truncated");
  auto v = image(kValid, 33);
  v[0] += 100;  // header length beyond the file
  expect_error(v, "beyond the end of the file");
  v = image(kValid, 33);
  for (int i = 0; i < 8; ++i) v[i] = 0xff;
  expect_error(v, "beyond the end of the file");
  // Length fits the declared file size but not the bytes handed in.
  v = image(kValid, 33);
  EXPECT_THROW(parse_safetensors_header(v.data(), 20, v.size(), "x.safetensors"), Error);
  // A huge header within a (claimed) huge file is refused before allocating.
  std::vector<uint8_t> big(16, ' ');
  const uint64_t n = 1ull << 40;
  for (int i = 0; i < 8; ++i) big[i] = static_cast<uint8_t>(n >> (8 * i));
  EXPECT_THROW(parse_safetensors_header(big.data(), big.size(), 1ull << 41, "x.safetensors"), Error);
  // Header shorter than claimed: the JSON is cut off.
  v = image(kValid, 0);
  expect_error(v, "beyond");  // tensor ranges now lie past the end of data
  v = image(std::string(kValid).substr(0, 40), 0);
  expect_error(v, "malformed safetensors header JSON");
}

TEST(SafetensorsHeader, RejectsBadEntries) {
  auto one = [](const std::string& entry, size_t data = 64) {
    return image(std::string(R"({"t":)") + entry + "}", data);
  };
  expect_error(image("garbage", 0), "malformed");
  expect_error(image("[1,2]", 0), "not a JSON object");
  expect_error(image(R"({"__metadata__":[1]})", 0), "__metadata__");
  expect_error(one("5"), "'t'");
  expect_error(image(R"({"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4), "control characters");
  expect_error(one(R"({"shape":[1],"data_offsets":[0,4]})"), "dtype");
  expect_error(one(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})"), "dtype");
  expect_error(one(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})"), "unknown dtype 'F33'");
  expect_error(one(R"({"dtype":"F32","data_offsets":[0,4]})"), "shape");
  expect_error(one(R"({"dtype":"F32","shape":{},"data_offsets":[0,4]})"), "shape");
  expect_error(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), "shape");
  expect_error(one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"), "shape");
  expect_error(one(R"({"dtype":"F32","shape":["1"],"data_offsets":[0,4]})"), "shape");
  expect_error(one(R"({"dtype":"F32","shape":[1,1,1,1,1,1,1],"data_offsets":[0,4]})"), "dimensions");
  expect_error(one(R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]})"),
               "too large");
  expect_error(one(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]})"), "too large");
  expect_error(one(R"({"dtype":"F32","shape":[1]})"), "data_offsets");
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), "data_offsets");
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})"), "data_offsets");
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), "data_offsets");
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,"4"]})"), "data_offsets");
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), "reversed");
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[60,68]})"), "beyond the end");
  expect_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]})"), "beyond the end");
  expect_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), "needs 8 bytes");
  expect_error(one(R"({"dtype":"BF16","shape":[3],"data_offsets":[0,8]})"), "needs 6 bytes");
  // Overlapping ranges, also when one contains the other.
  expect_error(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     16),
               "overlap");
  expect_error(image(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                     R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                     16),
               "overlap");
}

// Deeply nested JSON must not exhaust the stack anywhere (parse, metadata, error messages).
TEST(SafetensorsHeader, DeepNestingIsAnErrorNotACrash) {
  const int depth = 200000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  for (const std::string& h : {R"({"__metadata__":{"k":)" + deep + "}}", R"({"t":)" + deep + "}",
                               R"({"t":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,4]}})"}) {
    ASSERT_NO_THROW(nlohmann::json::parse(h)) << "the test input itself must be valid JSON";
    EXPECT_THROW(parse(image(h, 4)), Error) << h.substr(0, 40);
  }
  // Metadata is str -> str in safetensors; other values are refused, not stringified.
  expect_error(image(R"({"__metadata__":{"format":1}})", 0), "__metadata__");
}

TEST(Safetensors, WriteThenReadBack) {
  const fs::path dir = fs::temp_directory_path() / ("dsv3_st_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "m.safetensors").string();
  std::vector<TensorToWrite> ts;
  ts.push_back({"w", DType::BF16, Shape{3, 5}, [](uint8_t* d) {
                  for (int i = 0; i < 30; ++i) d[i] = static_cast<uint8_t>(i);
                }});
  ts.push_back({"w_scale_inv", DType::F32, Shape{1, 1}, [](uint8_t* d) {
                  const float f = 0.25f;
                  std::memcpy(d, &f, 4);
                }});
  ts.push_back({"e", DType::F8_E4M3, Shape{7}, [](uint8_t* d) { std::memset(d, 0x38, 7); }});
  write_safetensors(path, ts);
  EXPECT_FALSE(fs::exists(path + ".partial"));

  // Read the file by hand: u64 length, JSON, data.
  std::ifstream f(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), {});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  EXPECT_EQ((8 + n) % 8, 0u);
  const auto j = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(j["__metadata__"]["format"], "pt");
  EXPECT_EQ(j["w"]["dtype"], "BF16");
  EXPECT_EQ(j["w"]["shape"], nlohmann::json({3, 5}));
  EXPECT_EQ(j["w"]["data_offsets"], nlohmann::json({0, 30}));
  EXPECT_EQ(j["w_scale_inv"]["data_offsets"], nlohmann::json({30, 34}));
  EXPECT_EQ(j["e"]["data_offsets"], nlohmann::json({34, 41}));
  EXPECT_EQ(bytes.size(), 8 + n + 41);
  EXPECT_EQ(bytes[8 + n + 29], 29);
  float sc;
  std::memcpy(&sc, &bytes[8 + n + 30], 4);
  EXPECT_EQ(sc, 0.25f);
  EXPECT_EQ(bytes[8 + n + 40], 0x38);

  SafetensorsFile st(path);
  ASSERT_NE(st.find("e"), nullptr);
  EXPECT_EQ(st.find("nope"), nullptr);
  EXPECT_EQ(st.data(*st.find("e"))[6], 0x38);
  EXPECT_EQ(st.find("w")->shape, Shape({3, 5}));

  // A single-file checkpoint without an index opens too.
  auto ck = Checkpoint::open(dir.string());
  EXPECT_FALSE(ck->has_index());
  EXPECT_EQ(ck->tensors().size(), 3u);
  ASSERT_NE(ck->find("w_scale_inv"), nullptr);
  fs::remove_all(dir);
}

TEST(Safetensors, OpenErrorsNameTheFile) {
  const fs::path dir = fs::temp_directory_path() / ("dsv3_st2_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string p = (dir / "bad.safetensors").string();
  { std::ofstream(p) << "abc"; }
  try {
    SafetensorsFile f(p);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsFile((dir / "missing.safetensors").string()), Error);
  EXPECT_THROW(SafetensorsFile(dir.string()), Error);  // a directory
  EXPECT_THROW(Checkpoint::open((dir / "nodir").string()), Error);
  fs::remove(p);
  EXPECT_THROW(Checkpoint::open(dir.string()), Error);  // no shard at all
  fs::remove_all(dir);
}

// ---------------------------------------------------------------- mutation fuzz

// Checks what a successful parse promises: every range inside the data section, sized
// shape x dtype, sorted and disjoint.
void check_invariants(const SafetensorsHeader& h, uint64_t file_size) {
  ASSERT_LE(h.data_start, file_size);
  uint64_t prev_end = 0;
  for (const auto& t : h.tensors) {
    ASSERT_LE(t.begin, t.end);
    ASSERT_LE(t.end, file_size - h.data_start);
    ASSERT_EQ(static_cast<uint64_t>(t.shape.numel()) * dtype_size(t.dtype), t.nbytes());
    ASSERT_GE(t.begin, prev_end);
    prev_end = t.end;
  }
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}
  uint64_t next(uint64_t n) { return n ? rng_() % n : 0; }

  std::vector<uint8_t> mutate(std::vector<uint8_t> v) {
    const int rounds = 1 + static_cast<int>(next(3));
    for (int r = 0; r < rounds && !v.empty(); ++r) {
      switch (next(9)) {
        case 0: {  // bit flips anywhere
          for (int k = 0, n = 1 + static_cast<int>(next(8)); k < n; ++k) v[next(v.size())] ^= 1u << next(8);
          break;
        }
        case 1:  // truncation
          v.resize(next(v.size() + 1));
          break;
        case 2: {  // length field edits
          if (v.size() < 8) break;
          uint64_t n = 0;
          for (int i = 7; i >= 0; --i) n = (n << 8) | v[i];
          const uint64_t choices[] = {n + 1, n - 1, n + next(64), n - next(64), 0, v.size(), v.size() - 8,
                                      ~0ull, 1ull << 63, next(1ull << 32), (~0ull) - next(16)};
          n = choices[next(std::size(choices))];
          for (int i = 0; i < 8; ++i) v[i] = static_cast<uint8_t>(n >> (8 * i));
          break;
        }
        case 3: {  // replace a number in the JSON
          const size_t at = find_in_header(v, [](uint8_t c) { return c >= '0' && c <= '9'; });
          if (at == npos) break;
          size_t end = at;
          while (end < v.size() && v[end] >= '0' && v[end] <= '9') ++end;
          static const char* nums[] = {"0", "1", "-1", "7", "1.5", "1e3", "18446744073709551615",
                                       "18446744073709551616", "4294967296", "9223372036854775807",
                                       "-9223372036854775808", "99999999999999999999999", "NaN", "", "3",
                                       "128", "[]", "{}", "null", "\"8\""};
          splice(v, at, end, nums[next(std::size(nums))]);
          break;
        }
        case 4: {  // replace a string token (keys, dtype names)
          const size_t q = find_in_header(v, [](uint8_t c) { return c == '"'; });
          if (q == npos) break;
          size_t end = q + 1;
          while (end < v.size() && v[end] != '"') ++end;
          static const char* strs[] = {"\"F32\"", "\"BF16\"", "\"F8_E4M3\"", "\"F8_E5M2\"", "\"I64\"",
                                       "\"BOOL\"", "\"F64\"", "\"XX\"", "\"dtype\"", "\"shape\"",
                                       "\"data_offsets\"", "\"__metadata__\"", "\"\"", "\"a\"",
                                       "\"\\u0000\"", "\"\\ud800\"", "\"\xff\xfe\"", "1", "null"};
          splice(v, q, std::min(end + 1, v.size()), strs[next(std::size(strs))]);
          break;
        }
        case 5: {  // insert or delete a structural character
          if (v.size() <= 8) break;
          const size_t at = 8 + next(v.size() - 8);
          static const char tokens[] = "{}[],:\" \\-0e.";
          if (next(2)) v.insert(v.begin() + static_cast<long>(at), static_cast<uint8_t>(tokens[next(sizeof tokens - 1)]));
          else v.erase(v.begin() + static_cast<long>(at));
          fix_length(v, next(4) != 0, 1);
          break;
        }
        case 6: {  // duplicate or delete a span of the header
          if (v.size() <= 9) break;
          const size_t a = 8 + next(v.size() - 8), len = 1 + next(std::min<size_t>(64, v.size() - a));
          std::vector<uint8_t> span(v.begin() + static_cast<long>(a), v.begin() + static_cast<long>(a + len));
          if (next(2)) v.insert(v.begin() + static_cast<long>(a), span.begin(), span.end());
          else v.erase(v.begin() + static_cast<long>(a), v.begin() + static_cast<long>(a + len));
          break;
        }
        case 7:  // random byte values
          v[next(v.size())] = static_cast<uint8_t>(next(256));
          break;
        case 8:  // grow or shrink the data section
          if (next(2)) v.resize(v.size() + next(64), 0);
          else v.resize(v.size() - next(std::min<size_t>(v.size(), 64)));
          break;
      }
    }
    return v;
  }

 private:
  static constexpr size_t npos = ~size_t{0};
  std::mt19937_64 rng_;

  template <typename Pred>
  size_t find_in_header(const std::vector<uint8_t>& v, Pred p) {
    if (v.size() <= 8) return npos;
    const size_t start = 8 + next(v.size() - 8);
    for (size_t i = start; i < v.size(); ++i)
      if (p(v[i])) return i;
    return npos;
  }
  // Replaces [a, b) of the JSON and, usually, keeps the length field consistent with the edit.
  void splice(std::vector<uint8_t>& v, size_t a, size_t b, const std::string& with) {
    const int64_t delta = static_cast<int64_t>(with.size()) - static_cast<int64_t>(b - a);
    v.erase(v.begin() + static_cast<long>(a), v.begin() + static_cast<long>(b));
    v.insert(v.begin() + static_cast<long>(a), with.begin(), with.end());
    fix_length(v, next(4) != 0, delta);
  }
  void fix_length(std::vector<uint8_t>& v, bool fix, int64_t delta) {
    if (!fix || v.size() < 8) return;
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | v[i];
    n += static_cast<uint64_t>(delta);
    for (int i = 0; i < 8; ++i) v[i] = static_cast<uint8_t>(n >> (8 * i));
  }
};

TEST(SafetensorsFuzz, MutatedHeadersOnlyThrowDsv3Error) {
  // Seeds: the crafted header, a header with every dtype, and one shaped like a real shard.
  std::vector<std::vector<uint8_t>> seeds;
  seeds.push_back(image(kValid, 33));
  {
    nlohmann::ordered_json j;
    j["__metadata__"] = {{"format", "pt"}};
    uint64_t off = 0;
    const char* names[] = {"BOOL", "U8", "I8", "I16", "I32", "I64", "F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"};
    for (const char* d : names) {
      const uint64_t nb = 3 * dtype_size(*parse_dtype(d));
      j[std::string("t_") + d] = {{"dtype", d}, {"shape", {3}}, {"data_offsets", {off, off + nb}}};
      off += nb;
    }
    seeds.push_back(image(j.dump(), off));
  }
  {
    const std::string h =
        R"({"model.layers.0.mlp.down_proj.weight":{"dtype":"F8_E4M3","shape":[16,24],"data_offsets":[0,384]},)"
        R"("model.layers.0.mlp.down_proj.weight_scale_inv":{"dtype":"F32","shape":[1,1],"data_offsets":[384,388]},)"
        R"("model.norm.weight":{"dtype":"BF16","shape":[16],"data_offsets":[388,420]}})";
    std::string padded = h;
    while ((padded.size() + 8) % 8) padded.push_back(' ');
    seeds.push_back(image(padded, 420));
  }
  for (const auto& s : seeds) ASSERT_NO_THROW(parse(s));

  const int iterations = 300000;
  Mutator mut(20261123);
  int accepted = 0, rejected = 0;
  for (int it = 0; it < iterations; ++it) {
    const auto& seed = seeds[static_cast<size_t>(it) % seeds.size()];
    // An exactly sized heap copy, so ASan sees any read past the end.
    std::vector<uint8_t> v = mut.mutate(seed);
    std::unique_ptr<uint8_t[]> buf(new uint8_t[v.size() ? v.size() : 1]);
    if (!v.empty()) std::memcpy(buf.get(), v.data(), v.size());
    // Mostly the whole file; sometimes only a prefix is handed in (the header may be cut).
    const size_t avail = (it % 16 == 0 && v.size() > 8) ? 8 + mut.next(v.size() - 8) : v.size();
    try {
      const auto h = parse_safetensors_header(buf.get(), avail, v.size(), "fuzz.safetensors");
      check_invariants(h, v.size());
      ++accepted;
    } catch (const Error& e) {
      ++rejected;
      const std::string m = e.what();
      if (m.find('\n') != std::string::npos || m.find("fuzz.safetensors") == std::string::npos)
        FAIL() << "iteration " << it << ": message not one line naming the file: " << m;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << it << ": non-dsv3 exception " << typeid(e).name() << ": " << e.what();
    }
    if (HasFatalFailure()) FAIL() << "iteration " << it;
  }
  // Both outcomes must be well represented, or the mutations are too weak or too destructive.
  EXPECT_GT(accepted, iterations / 50);
  EXPECT_GT(rejected, iterations / 2);
  std::printf("mutation fuzz: %d accepted, %d rejected\n", accepted, rejected);
}

}  // namespace
}  // namespace dsv3
