// Byte-level BPE tokenizer of DeepSeek-V3 (spec section 8), read from a Hugging Face
// tokenizer.json: added tokens are matched first, the rest is split by the pre-tokenizer regexes
// (PCRE2) and each piece is merged by BPE rank. Encoding and decoding match Hugging Face
// `tokenizers` (encode with add_special_tokens=False; decode is lossy UTF-8 like Rust's
// from_utf8_lossy). All const methods are safe to call from several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class BpeModel;
class PreTokenizer;
class AddedTokenMatcher;
class StringIdMap;

class Tokenizer {
 public:
  // The padded vocabulary of the DeepSeek-V3 model (config.json vocab_size): ids below it that
  // have no token decode to nothing; ids at or above it are errors (see set_vocab_limit).
  static constexpr int32_t kDefaultVocabLimit = 129280;

  // `path`: a folder with tokenizer.json (and optionally tokenizer_config.json, for the bos/eos
  // token names), or a tokenizer.json file (its folder is searched for tokenizer_config.json).
  // Throws dsv3::Error naming the file and field when the file is malformed or unsupported.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  static bool available(const std::string& dir);  // tokenizer.json exists there
  ~Tokenizer();

  // Ids for `text` (no BOS added). match_special=false treats every added token (special or not,
  // e.g. "<｜User｜>") as plain text: use it for untrusted text. Invalid UTF-8 throws; pass the
  // text through utf8_sanitize() (tokenizer/utf8.h) first to get U+FFFD replacements instead.
  std::vector<int32_t> encode(std::string_view text, bool match_special = true) const;
  // Appends to `out` (no allocation when `out` has room and the pieces are cached).
  void encode_into(std::string_view text, std::vector<int32_t>& out, bool match_special = true) const;

  // Bytes of the tokens as UTF-8, invalid sequences replaced by U+FFFD. skip_special drops the
  // special added tokens (BOS/EOS/pad/placeholders, not "<｜User｜>" which is not special).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  std::string_view token_bytes(int32_t id) const;  // raw bytes of one token ("" when none)
  // Id of a token given as written in tokenizer.json (added token content, or vocab form such
  // as "Ġthe"); nullopt when there is none.
  std::optional<int32_t> token_id(std::string_view token_text) const;
  bool is_special(int32_t id) const;
  bool has_token(int32_t id) const;

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  std::string bos_token() const { return bos_token_; }
  std::string eos_token() const { return eos_token_; }
  size_t size() const { return num_tokens_; }  // number of ids with a token

  int32_t vocab_limit() const { return vocab_limit_; }
  // The runtime sets the model's vocab_size here; never below the tokenizer's own id range.
  void set_vocab_limit(int32_t n);

 private:
  Tokenizer();
  void check_id(int32_t id) const;
  friend class TokenizerLoader;
  static constexpr uint8_t kHasToken = 1, kSpecial = 2;

  // Per id: raw bytes and flags. [id_space]
  std::vector<std::string> bytes_;
  std::vector<uint8_t> flags_;  // kHasToken | kSpecial
  std::unique_ptr<StringIdMap> ids_by_text_;  // added contents and vocab entries
  std::string bos_token_, eos_token_;
  size_t num_tokens_ = 0;
  int32_t vocab_limit_ = kDefaultVocabLimit;
  int32_t bos_id_ = 0, eos_id_ = 1;
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<AddedTokenMatcher> added_;
};

// Turns ids into text while generating: never emits part of a UTF-8 character and emits every
// character as soon as its last byte has arrived. Bytes that can never form a character are
// emitted as U+FFFD at once, so push()...flush() equals Tokenizer::decode of the same ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();  // whatever is pending (an incomplete character becomes U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;  // bytes of an incomplete character (at most 3)
};

}  // namespace dsv3
