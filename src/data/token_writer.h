// Writer side of the token data format (token_data.h): documents in, train.bin / val.bin /
// meta.json out, split into train and validation by document.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

namespace dsv3 {

// Whether document `index` belongs to the validation split: a hash of (seed, index) compared with
// `fraction`, so the split does not depend on the order of anything but the documents themselves.
// fraction 0 never picks a document.
bool is_val_document(uint64_t seed, int64_t index, double fraction);

// One token file, written under `tmp_path` with a buffered stream; the header is filled in at
// finish(), which renames the file to its final name. Destroyed unfinished, it removes the file.
class TokenFileWriter {
 public:
  explicit TokenFileWriter(std::string tmp_path);
  ~TokenFileWriter();
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;
  // Ids must be non-negative (checked by the caller, TokenDataWriter).
  void add_document(std::span<const int32_t> ids);
  // Header, flush, fsync, rename to final_path.
  void finish(const std::string& final_path);
  int64_t tokens() const { return tokens_; }
  int64_t docs() const { return docs_; }

 private:
  void flush_buffer();
  std::string tmp_;
  std::FILE* f_ = nullptr;
  std::vector<uint32_t> buf_;  // pending ids [<= kBufferTokens]
  int64_t tokens_ = 0, docs_ = 0;
};

struct TokenDataSummary {
  int64_t vocab_size = 0, train_tokens = 0, val_tokens = 0, train_docs = 0, val_docs = 0;
};

// A data directory being written. Documents are routed to train or val as they arrive (only the
// pending write buffers are held in memory); finish() writes meta.json last, so a directory
// without it never loads. Destroyed unfinished, the partial files are removed.
class TokenDataWriter {
 public:
  struct Options {
    double val_fraction = 0.05;  // in [0, 1)
    uint64_t seed = 0;
    int64_t vocab_size = 0;  // > 0: every id must be below it; 0: max id + 1 (at least finish's floor)
    bool force = false;      // write into a non-empty directory (its token files are replaced)
  };
  // Creates `dir` if needed. Throws when it is not empty (and not force) or not writable.
  TokenDataWriter(const std::string& dir, const Options& o);
  ~TokenDataWriter();

  // Adds one document; an empty one is ignored. Throws dsv3::Error (without a file name: the
  // caller knows where the document came from) when an id is negative or not below vocab_size.
  void add(std::span<const int32_t> doc);
  int64_t docs() const { return train_->docs() + val_->docs(); }
  int64_t tokens() const { return train_->tokens() + val_->tokens(); }

  // Renames the token files into place and writes meta.json. A lone document is always
  // training data. vocab_floor: the least vocab_size to record when Options::vocab_size is 0
  // (the tokenizer's size in text mode).
  TokenDataSummary finish(const nlohmann::json& source, const nlohmann::json& tokenizer, int64_t vocab_floor = 0);

 private:
  std::string dir_;
  Options o_;
  std::unique_ptr<TokenFileWriter> train_, val_;
  int32_t max_id_ = -1;
};

}  // namespace dsv3
