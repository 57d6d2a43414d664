// Reader side of the token data format (token_data.h): validate once at open, then serve
// sequences straight from the mmap'd file.
#include "data/token_data.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/token_format.h"
#include "io/mapped_file.h"

namespace dsv3 {

static_assert(std::endian::native == std::endian::little, "token files are little-endian uint32");

TokenStream::TokenStream(const std::string& path, int64_t vocab_size) {
  file_ = std::make_unique<MappedFile>(path);
  const size_t bytes = file_->size();
  if (bytes < kTokenHeaderBytes)
    fail("{}: truncated: {} bytes, shorter than the {}-byte header", path, bytes, kTokenHeaderBytes);
  TokenHeader h;
  std::memcpy(&h, file_->data(), sizeof h);
  if (std::memcmp(h.magic, kTokenMagic, sizeof h.magic) != 0)
    fail("{}: bad magic (not a dsv3 token file; expected \"{}\")", path, std::string(kTokenMagic, 8));
  if (h.reserved != 0) fail("{}: unsupported header (reserved field is {}, expected 0)", path, h.reserved);
  const uint64_t payload = bytes - kTokenHeaderBytes;
  if (payload % 4 != 0 || h.tokens > payload / 4) {
    fail("{}: truncated: header says {} tokens ({} bytes) but the file holds {} bytes of tokens", path, h.tokens,
         h.tokens * 4, payload);
  }
  if (h.tokens < payload / 4)
    fail("{}: token count mismatch: header says {} tokens but the file holds {}", path, h.tokens, payload / 4);
  // Empty documents are never written, so every document holds at least one token.
  if (h.docs > h.tokens) fail("{}: document count mismatch: {} documents but only {} tokens", path, h.docs, h.tokens);
  if (h.tokens > 0 && h.docs == 0) fail("{}: document count mismatch: {} tokens in 0 documents", path, h.tokens);
  n_ = static_cast<int64_t>(h.tokens);
  docs_ = static_cast<int64_t>(h.docs);
  data_ = reinterpret_cast<const uint32_t*>(file_->data() + kTokenHeaderBytes);  // mmap is page aligned
  if (vocab_size > 0) {
    // One pass over the ids (memory bandwidth bound) so training never indexes past the embedding.
    const uint32_t limit = static_cast<uint32_t>(std::min<int64_t>(vocab_size, UINT32_MAX));
    uint32_t mx = 0;
    for (int64_t i = 0; i < n_; ++i) mx = std::max(mx, data_[i]);
    if (n_ > 0 && mx >= limit) {
      int64_t at = 0;
      while (data_[at] < limit) ++at;
      fail("{}: token {} has id {}, not below the vocabulary size {}", path, at, data_[at], vocab_size);
    }
  } else {
    // Ids are handed out as int32.
    for (int64_t i = 0; i < n_; ++i)
      if (data_[i] > static_cast<uint32_t>(INT32_MAX)) fail("{}: token {} has id {}, out of range", path, i, data_[i]);
  }
}

TokenStream::~TokenStream() = default;
TokenStream::TokenStream(TokenStream&&) noexcept = default;

void TokenStream::sequence(int64_t i, int64_t seq_len, int32_t* out) const {
  if (seq_len <= 0) fail("{}: sequence length must be positive, got {}", file_->path(), seq_len);
  if (i < 0 || i >= sequences(seq_len))
    fail("{}: sequence {} out of range ({} sequences of {} tokens)", file_->path(), i, sequences(seq_len), seq_len);
  // Ids were checked at open (< vocab_size, or <= INT32_MAX), so the cast is exact.
  const uint32_t* src = data_ + i * seq_len;
  for (int64_t t = 0; t < seq_len; ++t) out[t] = static_cast<int32_t>(src[t]);
}

TokenData TokenData::open(const std::string& dir, int64_t model_vocab_size) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec)) fail("{}: not a directory (expected the output of `dsv3 data`)", dir);
  const std::string meta_path = (d / "meta.json").string();
  if (!fs::is_regular_file(meta_path, ec))
    fail("{}: no meta.json: not a token data directory, or `dsv3 data` did not finish", dir);
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(read_text_file(meta_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", meta_path, e.what());
  }
  if (!meta.is_object()) fail("{}: top level is not an object", meta_path);
  if (meta.value("format", std::string()) != kTokenFormat)
    fail("{}: field \"format\": expected \"{}\"", meta_path, kTokenFormat);
  auto count = [&](const char* key) -> int64_t {
    auto it = meta.find(key);
    if (it == meta.end() || !it->is_number_integer() || it->get<int64_t>() < 0)
      fail("{}: field \"{}\": expected a non-negative integer", meta_path, key);
    return it->get<int64_t>();
  };
  TokenData td;
  td.vocab_size = count("vocab_size");
  if (td.vocab_size <= 0) fail("{}: field \"vocab_size\": must be positive", meta_path);
  if (model_vocab_size > 0 && td.vocab_size > model_vocab_size)
    fail("{}: vocab_size {} exceeds the model's vocab_size {}", meta_path, td.vocab_size, model_vocab_size);
  td.train = std::make_unique<TokenStream>((d / "train.bin").string(), td.vocab_size);
  td.val = std::make_unique<TokenStream>((d / "val.bin").string(), td.vocab_size);
  // The counts tie meta.json to these exact files (a rerun killed after replacing one stream).
  auto match = [&](const char* key, int64_t got, const char* file) {
    if (count(key) != got)
      fail("{}: field \"{}\" is {} but {} holds {}: files from different runs", meta_path, key, count(key), file, got);
  };
  match("train_tokens", td.train->size(), "train.bin");
  match("val_tokens", td.val->size(), "val.bin");
  match("train_docs", td.train->docs(), "train.bin");
  match("val_docs", td.val->docs(), "val.bin");
  return td;
}

}  // namespace dsv3
