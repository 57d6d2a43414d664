// Reasoning models (R1) answer "<think>THOUGHTS</think>ANSWER"; the API returns THOUGHTS as
// reasoning_content and ANSWER as content (spec section 11), streamed as they arrive. The think
// block is recognised when the generated text opens with <think> or, as R1's template does, the
// prompt already ends with it.
#pragma once
#include <string>
#include <string_view>

namespace dsv3::server {

// Length of the longest proper prefix of `marker` that `s` ends with: text a streaming parser
// must hold back because the marker may be arriving byte by byte.
size_t partial_marker(std::string_view s, std::string_view marker);

class ReasoningParser {
 public:
  explicit ReasoningParser(bool prompt_opened_think) : state_(prompt_opened_think ? kThink : kStart) {}
  struct Out {
    std::string reasoning, content;
  };
  Out push(const std::string& text);
  Out flush();  // end of generation: whatever was held back
  bool saw_think() const { return saw_; }

 private:
  enum State { kStart, kThink, kContent };
  State state_;
  bool saw_ = false;
  bool strip_newlines_ = false;  // after </think>: the template's blank line is not content
  std::string pending_;
};

// True when the rendered prompt ends inside an opened think block ("<think>" or "<think>\n").
bool prompt_opens_think(std::string_view prompt_tail);

}  // namespace dsv3::server
