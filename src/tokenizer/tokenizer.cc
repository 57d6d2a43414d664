// Encoding, decoding and streaming; loading tokenizer.json is in loader.cc.
#include "tokenizer/tokenizer.h"

#include <fmt/format.h>

#include "core/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/string_map.h"
#include "tokenizer/utf8.h"

namespace dsv3 {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out, bool match_special) const {
  size_t bad = utf8_first_invalid(text);
  if (bad != std::string_view::npos)
    fail("tokenizer: input is not valid UTF-8 (byte 0x{:02x} at offset {})",
         static_cast<unsigned char>(text[bad]), bad);
  auto plain = [&](std::string_view segment) {
    pre_->split(segment, [&](std::string_view piece) { bpe_->encode_word(piece, out); });
  };
  if (!match_special || added_->empty()) {
    plain(text);
    return;
  }
  size_t pos = 0, start = 0, len = 0;
  int32_t id = 0;
  while (added_->find(text, pos, start, len, id)) {
    plain(text.substr(pos, start - pos));
    out.push_back(id);
    pos = start + len;
  }
  plain(text.substr(pos));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool match_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_into(text, out, match_special);
  return out;
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_limit_) fail("tokenizer: token id {} is out of range [0, {})", id, vocab_limit_);
}

bool Tokenizer::has_token(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < flags_.size() && (flags_[id] & kHasToken);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < flags_.size() && (flags_[id] & kSpecial);
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return has_token(id) ? std::string_view(bytes_[id]) : std::string_view();
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  const int32_t* id = ids_by_text_->find(token_text);
  if (!id) return std::nullopt;
  return *id;
}

void Tokenizer::set_vocab_limit(int32_t n) {
  vocab_limit_ = std::max<int32_t>(n, static_cast<int32_t>(bytes_.size()));
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string raw;
  for (int32_t id : ids) {
    check_id(id);
    if (!has_token(id) || (skip_special && is_special(id))) continue;
    raw += bytes_[id];
  }
  if (utf8_first_invalid(raw) == std::string::npos) return raw;
  std::string out;
  utf8_append_lossy(raw, out, true);
  return out;
}

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  std::string_view bytes = tok_.token_bytes(id);  // throws when out of range
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += bytes;
  std::string out;
  size_t used = utf8_append_lossy(pending_, out, false);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8_append_lossy(pending_, out, true);
  pending_.clear();
  return out;
}

}  // namespace dsv3
