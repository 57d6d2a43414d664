#include "tokenizer/added_tokens.h"

#include <algorithm>

namespace dsv3 {

int32_t AddedTokenMatcher::child(int32_t node, uint8_t b) const {
  for (const auto& [c, next] : nodes_[node].children)
    if (c == b) return next;
  return -1;
}

void AddedTokenMatcher::add(std::string_view content, int32_t id) {
  if (content.empty()) return;
  int32_t node = 0;
  for (char ch : content) {
    auto b = static_cast<uint8_t>(ch);
    int32_t next = child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_[node].children.emplace_back(b, next);
      nodes_.emplace_back();
    }
    node = next;
  }
  nodes_[node].token = id;  // a repeated content keeps the last id, as a map insert would
  first_byte_[static_cast<uint8_t>(content[0])] = true;
}

bool AddedTokenMatcher::find(std::string_view text, size_t from, size_t& start, size_t& len,
                             int32_t& id) const {
  if (empty()) return false;
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[static_cast<uint8_t>(text[i])]) continue;
    int32_t node = 0;
    size_t best = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = j + 1 - i;
        id = nodes_[node].token;
      }
    }
    if (best > 0) {
      start = i;
      len = best;
      return true;
    }
  }
  return false;
}

}  // namespace dsv3
