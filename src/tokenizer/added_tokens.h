// Finds added tokens ("<｜User｜>", "<｜begin▁of▁sentence｜>", ...) in raw text before
// pre-tokenization, leftmost-longest like Hugging Face's aho-corasick matcher: at the first
// position where any added token starts, the longest one there wins.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace dsv3 {

class AddedTokenMatcher {
 public:
  void add(std::string_view content, int32_t id);
  bool empty() const { return nodes_.size() <= 1; }

  // Next added token in text at or after `from`: its start, length and id; false when none.
  bool find(std::string_view text, size_t from, size_t& start, size_t& len, int32_t& id) const;

 private:
  // Byte trie; children kept in a small sorted vector (most nodes have one child).
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;  // id of the token ending here
  };
  int32_t child(int32_t node, uint8_t b) const;
  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::array<bool, 256> first_byte_{};
};

}  // namespace dsv3
