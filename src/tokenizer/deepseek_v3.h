// DeepSeek-V3's tokenizer layout (spec section 8), as data: the pre-tokenizer regexes, the added
// tokens and the chat template of deepseek-ai/DeepSeek-V3's tokenizer.json and
// tokenizer_config.json. `dsv3 tokenizer train` writes new tokenizers in this layout without
// needing the original files.
#pragma once
#include <array>
#include <string_view>

namespace dsv3::deepseek_v3 {

// The three Split(Isolated) regexes of pre_tokenizer.pretokenizers[0..2], in Oniguruma syntax as
// tokenizer.json stores them (run them through translate_onig_pattern for PCRE2): digit runs of
// 1-3, CJK/kana runs, then words/punctuation/whitespace. ByteLevel(use_regex=false) follows.
extern const std::array<std::string_view, 3> kSplitPatterns;

struct AddedTokenSpec {
  std::string_view content;
  bool special;     // skipped by decode(skip_special_tokens=True)
  bool normalized;  // as in the original file (no normalizer runs, so it changes nothing)
};
// BOS, EOS and pad: ids 0, 1, 2 in DeepSeek-V3 (and in trained tokenizers).
extern const std::array<AddedTokenSpec, 3> kLeadingTokens;
// The added tokens after the BPE vocab (ids 128800.. in DeepSeek-V3, which also has 800
// "<｜place▁holder▁no▁N｜>" tokens before them that trained tokenizers leave out).
extern const std::array<AddedTokenSpec, 15> kTrailingTokens;

// tokenizer_config.json "chat_template" of deepseek-ai/DeepSeek-V3 (byte for byte).
extern const std::string_view kChatTemplate;
// tokenizer_config.json "model_max_length" of DeepSeek-V3.
constexpr long kModelMaxLength = 131072;

}  // namespace dsv3::deepseek_v3
