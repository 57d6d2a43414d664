#include "server/reasoning.h"

#include <algorithm>

namespace dsv3::server {

namespace {
constexpr std::string_view kOpen = "<think>", kClose = "</think>";
}

size_t partial_marker(std::string_view s, std::string_view marker) {
  size_t k = std::min(s.size(), marker.size() - 1);
  while (k > 0 && s.substr(s.size() - k) != marker.substr(0, k)) --k;
  return k;
}

bool prompt_opens_think(std::string_view tail) {
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.remove_suffix(1);
  return tail.size() >= kOpen.size() && tail.substr(tail.size() - kOpen.size()) == kOpen;
}

ReasoningParser::Out ReasoningParser::push(const std::string& text) {
  Out out;
  if (state_ == kContent) {
    out.content = text;
    if (strip_newlines_) {
      out.content.erase(0, std::min(out.content.find_first_not_of('\n'), out.content.size()));
      strip_newlines_ = out.content.empty();
    }
    return out;
  }
  pending_ += text;
  if (state_ == kStart) {
    const size_t ws = std::min(pending_.find_first_not_of(" \n\t\r"), pending_.size());
    const std::string_view rest = std::string_view(pending_).substr(ws);
    if (rest.size() >= kOpen.size() && rest.substr(0, kOpen.size()) == kOpen) {
      pending_.erase(0, ws + kOpen.size());
      state_ = kThink;
    } else if (rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest) {
      return out;  // may still become <think>
    } else {
      state_ = kContent;
      out.content.swap(pending_);
      return out;
    }
  }
  saw_ = true;
  const size_t close = pending_.find(kClose);
  if (close != std::string::npos) {
    out.reasoning = pending_.substr(0, close);
    const std::string rest = pending_.substr(close + kClose.size());
    pending_.clear();
    state_ = kContent;
    strip_newlines_ = true;
    out.content = push(rest).content;
    return out;
  }
  const size_t hold = partial_marker(pending_, kClose);
  out.reasoning = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

ReasoningParser::Out ReasoningParser::flush() {
  Out out;
  (state_ == kThink ? out.reasoning : out.content).swap(pending_);
  return out;
}

}  // namespace dsv3::server
