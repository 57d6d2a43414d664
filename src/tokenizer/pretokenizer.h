// Pre-tokenizer: a sequence of regex splits with Hugging Face "Isolated" behaviour (matches and
// the gaps between them both become pieces), each stage applied to every piece of the previous
// one. Patterns are written for Oniguruma (what Hugging Face tokenizers uses) and run on PCRE2 in
// UTF + UCP mode with JIT; translate_onig_pattern fixes the one class whose meaning differs.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

// PCRE2 \s also matches U+180E, which Oniguruma's \s (the White_Space property) does not; \s and
// \S are spelled out as explicit White_Space classes. Throws on \S inside a character class.
std::string translate_onig_pattern(std::string_view pattern);
// A regex matching `literal` exactly (for Split patterns given as {"String": ...}).
std::string escape_literal(std::string_view literal);

class Regex {
 public:
  // `where` names the pattern's origin for error messages.
  Regex(const std::string& pcre2_pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // First non-empty match in s at or after `start` (s must be valid UTF-8, start a char boundary).
  bool find(std::string_view s, size_t start, size_t& match_begin, size_t& match_end) const;

 private:
  void* code_;  // pcre2_code_8
  std::string where_;
};

class PreTokenizer {
 public:
  void add_split(const std::string& pcre2_pattern, const std::string& where) {
    stages_.push_back(std::make_unique<Regex>(pcre2_pattern, where));
  }
  size_t num_stages() const { return stages_.size(); }

  // Calls emit(piece) for every non-empty piece of `text`, in order.
  template <class F>
  void split(std::string_view text, F&& emit) const {
    split_stage(0, text, emit);
  }

 private:
  template <class F>
  void split_stage(size_t stage, std::string_view text, F& emit) const {
    if (text.empty()) return;
    if (stage == stages_.size()) {
      emit(text);
      return;
    }
    const Regex& re = *stages_[stage];
    size_t pos = 0, mb, me;
    while (pos < text.size() && re.find(text, pos, mb, me)) {
      if (mb > pos) split_stage(stage + 1, text.substr(pos, mb - pos), emit);  // the gap
      split_stage(stage + 1, text.substr(mb, me - mb), emit);               // the match
      pos = me;
    }
    if (pos < text.size()) split_stage(stage + 1, text.substr(pos), emit);
  }

  std::vector<std::unique_ptr<Regex>> stages_;
};

}  // namespace dsv3
