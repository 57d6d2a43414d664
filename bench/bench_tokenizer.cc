// Tokenizer speed: load time of tokenizer.json and single-thread encode MB/s on a mixed corpus
// (tests/js/corpus.mjs: fortunes in English/Russian/Chinese, man pages in many languages, C/C++
// headers). The first pass starts with an empty word cache, later passes reuse it.
//   bench_tokenizer [TOKENIZER_DIR] [CORPUS.txt]
// Without CORPUS.txt the corpus is built with node (like the JS parity test does).
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <ctime>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU time of this thread: on a shared machine wall time also counts time spent descheduled.
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) dsv3::fail("{}: cannot open", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Pieces of ~2 KB cut at line ends, as the parity test feeds them.
std::vector<std::string_view> chunks_of(const std::string& text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', std::min(text.size(), start + 2000));
    end = end == std::string::npos ? text.size() : end + 1;
    out.emplace_back(text.data() + start, end - start);
    start = end;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  fs::path root = fs::path(__FILE__).parent_path().parent_path();  // source tree
  std::string dir = argc > 1 ? argv[1] : (root / ".cache/tokenizer").string();
  fs::path corpus_path;
  if (argc > 2) {
    corpus_path = argv[2];
  } else {
    corpus_path = fs::temp_directory_path() / "dsv3_bench_tokenizer_corpus.txt";
    std::string cmd = fmt::format("node '{}' '{}' 6.4", (root / "tests/js/corpus.mjs").string(), corpus_path.string());
    if (std::system(cmd.c_str()) != 0) dsv3::fail("building the corpus failed: {}", cmd);
  }
  std::string text = read_file(corpus_path);
  auto chunks = chunks_of(text);
  double mb = text.size() / 1e6;

  double best_load = 1e9, best_load_cpu = 1e9;
  std::unique_ptr<dsv3::Tokenizer> tok;
  for (int i = 0; i < 3; ++i) {
    tok.reset();
    auto t0 = Clock::now();
    double c0 = thread_cpu_seconds();
    tok = dsv3::Tokenizer::load(dir);
    best_load_cpu = std::min(best_load_cpu, thread_cpu_seconds() - c0);
    best_load = std::min(best_load, seconds_since(t0));
  }
  fmt::print("load tokenizer.json: {:.0f} ms cpu, {:.0f} ms wall (best of 3), {} tokens\n", best_load_cpu * 1e3,
             best_load * 1e3, tok->size());

  std::vector<int32_t> ids;
  size_t tokens = 0;
  for (int pass = 0; pass < 3; ++pass) {
    tokens = 0;
    auto t0 = Clock::now();
    double c0 = thread_cpu_seconds();
    for (auto c : chunks) {
      ids.clear();
      tok->encode_into(c, ids);
      tokens += ids.size();
    }
    double s = thread_cpu_seconds() - c0, wall = seconds_since(t0);
    fmt::print("encode pass {} ({}): {:.2f} MB in {:.3f} s cpu ({:.3f} s wall) = {:.1f} MB/s, {:.2f} M tokens/s\n",
               pass, pass == 0 ? "empty cache" : "warm cache", mb, s, wall, mb / s, tokens / s / 1e6);
  }
  fmt::print("{} tokens, {:.2f} bytes/token\n", tokens, text.size() / double(tokens));

  double c0 = thread_cpu_seconds();
  size_t out_bytes = 0;
  for (auto c : chunks) out_bytes += tok->decode(tok->encode(c)).size();
  fmt::print("encode+decode (warm): {:.1f} MB/s cpu\n", mb / (thread_cpu_seconds() - c0));
  return out_bytes == text.size() ? 0 : 1;
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
