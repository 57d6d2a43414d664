#include "tokenizer/utf8.h"

#include <cstdint>

namespace dsv3 {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// What the sequence starting at s[0] (n bytes left) is: exactly one of the fields is non-zero.
struct Step {
  int len;     // > 0: valid sequence of this length
  int bad;     // > 0: invalid maximal subpart of this many bytes
  int cut;     // > 0: input ended after this many bytes of a still-valid prefix
};

Step step(const uint8_t* s, size_t n) {
  uint8_t b = s[0];
  if (b < 0x80) return {1, 0, 0};
  int need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return {0, 1, 0};
  }
  for (int k = 1; k <= need; ++k) {
    if (static_cast<size_t>(k) >= n) return {0, 0, k};
    uint8_t c = s[k];
    bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) return {0, k, 0};
  }
  return {need + 1, 0, 0};
}

}  // namespace

size_t utf8_first_invalid(std::string_view sv) {
  auto* s = reinterpret_cast<const uint8_t*>(sv.data());
  size_t n = sv.size(), i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    Step st = step(s + i, n - i);
    if (st.len == 0) return i;
    i += st.len;
  }
  return std::string_view::npos;
}

size_t utf8_append_lossy(std::string_view in, std::string& out, bool final) {
  auto* s = reinterpret_cast<const uint8_t*>(in.data());
  size_t n = in.size(), i = 0, run = 0;  // [run, i) is valid and not yet copied
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    Step st = step(s + i, n - i);
    if (st.len > 0) {
      i += st.len;
      continue;
    }
    out.append(in.substr(run, i - run));
    if (st.cut > 0 && !final) return i;  // may still complete with the next bytes
    out.append(kReplacement);
    i += st.bad > 0 ? st.bad : st.cut;
    run = i;
  }
  out.append(in.substr(run, i - run));
  return i;
}

std::string utf8_sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  utf8_append_lossy(text, out, true);
  return out;
}

}  // namespace dsv3
