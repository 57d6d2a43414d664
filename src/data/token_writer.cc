#include "data/token_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "data/token_format.h"
#include "io/mapped_file.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBufferTokens = 1 << 20;  // 4 MiB per output file

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void write_or_fail(std::FILE* f, const void* p, size_t n, const std::string& path) {
  if (n && std::fwrite(p, 1, n, f) != n) fail("{}: write failed: {}", path, std::strerror(errno));
}

}  // namespace

bool is_val_document(uint64_t seed, int64_t index, double fraction) {
  if (!(fraction > 0)) return false;
  const uint64_t h = splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(index));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < fraction;  // uniform in [0, 1)
}

// ---- TokenFileWriter ----

TokenFileWriter::TokenFileWriter(std::string tmp_path) : tmp_(std::move(tmp_path)) {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail("{}: cannot create: {}", tmp_, std::strerror(errno));
  // Placeholder header (zero magic) until finish(): an unfinished file never reads as valid.
  const char zero[kTokenHeaderBytes] = {};
  write_or_fail(f_, zero, sizeof zero, tmp_);
  buf_.reserve(kBufferTokens);
}

TokenFileWriter::~TokenFileWriter() {
  if (f_) {
    std::fclose(f_);
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void TokenFileWriter::flush_buffer() {
  write_or_fail(f_, buf_.data(), buf_.size() * sizeof(uint32_t), tmp_);
  buf_.clear();
}

void TokenFileWriter::add_document(std::span<const int32_t> ids) {
  if (ids.empty()) return;
  for (int32_t id : ids) {
    buf_.push_back(static_cast<uint32_t>(id));
    if (buf_.size() == kBufferTokens) flush_buffer();
  }
  tokens_ += static_cast<int64_t>(ids.size());
  ++docs_;
}

void TokenFileWriter::finish(const std::string& final_path) {
  flush_buffer();
  TokenHeader h{};
  std::memcpy(h.magic, kTokenMagic, sizeof h.magic);
  h.tokens = static_cast<uint64_t>(tokens_);
  h.docs = static_cast<uint64_t>(docs_);
  if (std::fseek(f_, 0, SEEK_SET) != 0) fail("{}: seek failed: {}", tmp_, std::strerror(errno));
  write_or_fail(f_, &h, sizeof h, tmp_);
  if (std::fflush(f_) != 0 || ::fsync(fileno(f_)) != 0) fail("{}: write failed: {}", tmp_, std::strerror(errno));
  const int rc = std::fclose(f_);
  f_ = nullptr;
  std::error_code ec;
  if (rc != 0) {
    fs::remove(tmp_, ec);
    fail("{}: write failed: {}", tmp_, std::strerror(errno));
  }
  fs::rename(tmp_, final_path, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove(tmp_, ec2);
    fail("{}: cannot rename from {}: {}", final_path, tmp_, ec.message());
  }
}

// ---- TokenDataWriter ----

TokenDataWriter::TokenDataWriter(const std::string& dir, const Options& o) : dir_(dir), o_(o) {
  if (!(o.val_fraction >= 0 && o.val_fraction < 1))
    fail("--val-fraction must be in [0, 1), got {}", o.val_fraction);
  if (o.vocab_size < 0 || o.vocab_size > static_cast<int64_t>(INT32_MAX) + 1)
    fail("--vocab-size must be between 1 and 2^31, got {}", o.vocab_size);
  std::error_code ec;
  const fs::path d(dir);
  if (fs::exists(d, ec) && !fs::is_directory(d, ec)) fail("{}: exists and is not a directory", dir);
  if (fs::is_directory(d, ec) && fs::directory_iterator(d, ec) != fs::directory_iterator() && !o.force)
    fail("{}: exists and is not empty; pass --force to replace its token data", dir);
  fs::create_directories(d, ec);
  if (ec) fail("{}: cannot create directory: {}", dir, ec.message());
  // A rerun with --force first invalidates the old data: until the new meta.json lands the
  // directory must not load, even if this run is killed half way.
  fs::remove(d / "meta.json", ec);
  if (ec) fail("{}: cannot remove the old meta.json: {}", dir, ec.message());
  train_ = std::make_unique<TokenFileWriter>((d / "train.bin.partial").string());
  val_ = std::make_unique<TokenFileWriter>((d / "val.bin.partial").string());
}

TokenDataWriter::~TokenDataWriter() = default;

void TokenDataWriter::add(std::span<const int32_t> doc) {
  if (doc.empty()) return;
  for (int32_t id : doc) {
    if (id < 0) fail("token id {} is negative", id);
    if (o_.vocab_size > 0 && id >= o_.vocab_size) fail("token id {} is not below the vocabulary size {}", id, o_.vocab_size);
    max_id_ = std::max(max_id_, id);
  }
  (is_val_document(o_.seed, docs(), o_.val_fraction) ? val_ : train_)->add_document(doc);
}

TokenDataSummary TokenDataWriter::finish(const nlohmann::json& source, const nlohmann::json& tokenizer,
                                         int64_t vocab_floor) {
  const fs::path d(dir_);
  // A lone document is the only training data there is: it goes to train whatever its hash.
  // Nothing is in train then, so swapping the two files' final names moves it without copying.
  const bool swap = docs() == 1 && val_->docs() == 1;
  TokenFileWriter& train = swap ? *val_ : *train_;
  TokenFileWriter& val = swap ? *train_ : *val_;
  TokenDataSummary s;
  s.vocab_size = o_.vocab_size > 0 ? o_.vocab_size : std::max<int64_t>({int64_t{max_id_} + 1, vocab_floor, 1});
  s.train_tokens = train.tokens();
  s.val_tokens = val.tokens();
  s.train_docs = train.docs();
  s.val_docs = val.docs();
  train.finish((d / "train.bin").string());
  val.finish((d / "val.bin").string());

  nlohmann::ordered_json meta;
  meta["format"] = kTokenFormat;
  meta["vocab_size"] = s.vocab_size;
  meta["train_tokens"] = s.train_tokens;
  meta["val_tokens"] = s.val_tokens;
  meta["train_docs"] = s.train_docs;
  meta["val_docs"] = s.val_docs;
  meta["source"] = source;
  meta["tokenizer"] = tokenizer;
  write_file_atomic((d / "meta.json").string(), meta.dump(2) + "\n");  // last: the directory now loads
  return s;
}

}  // namespace dsv3
