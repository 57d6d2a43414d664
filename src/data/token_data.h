// Token data for training: what `dsv3 data` writes and `dsv3 train` reads.
//
// A data directory holds
//   train.bin, val.bin  - a token stream each: 32-byte header (magic "DSV3TOK1", uint64 token
//                         count, uint64 document count, uint64 reserved 0), then the tokens as
//                         little-endian uint32. Documents are concatenated as they are (V3 packs
//                         documents with no separator or attention mask between them).
//   meta.json           - {"format": "dsv3-tokens-v1", "vocab_size", "train_tokens", "val_tokens",
//                          "train_docs", "val_docs", "source", "tokenizer"}.
// Each file is written under a temporary name and renamed when complete, meta.json last, so a
// killed `dsv3 data` never leaves a directory that loads.
//
// Training sequences are consecutive, non-overlapping chunks of seq_len tokens of the stream
// (a trailing partial chunk is dropped): a stream of exactly seq_len tokens is one sequence.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace dsv3 {

class MappedFile;

// One token stream, mmap'd and validated (magic, sizes, every id < vocab_size when given).
class TokenStream {
 public:
  // Throws dsv3::Error naming the file and the problem. vocab_size 0: ids are not checked.
  explicit TokenStream(const std::string& path, int64_t vocab_size = 0);
  ~TokenStream();
  TokenStream(TokenStream&&) noexcept;
  int64_t size() const { return n_; }
  int64_t docs() const { return docs_; }
  std::span<const uint32_t> tokens() const { return {data_, static_cast<size_t>(n_)}; }
  // Sequences of seq_len tokens this stream holds: size() / seq_len.
  int64_t sequences(int64_t seq_len) const { return seq_len > 0 ? n_ / seq_len : 0; }
  // Sequence i (0 <= i < sequences(seq_len)) as int32 ids into out[seq_len].
  void sequence(int64_t i, int64_t seq_len, int32_t* out) const;

 private:
  std::unique_ptr<MappedFile> file_;
  const uint32_t* data_ = nullptr;
  int64_t n_ = 0, docs_ = 0;
};

// A data directory: train.bin, val.bin (possibly empty: 0 tokens) and meta.json.
struct TokenData {
  std::unique_ptr<TokenStream> train, val;
  int64_t vocab_size = 0;  // from meta.json
  // Throws dsv3::Error when the directory is incomplete or the vocabulary exceeds the model's.
  static TokenData open(const std::string& dir, int64_t model_vocab_size);
};

}  // namespace dsv3
