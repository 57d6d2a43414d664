// UTF-8 checks shared by the encoder (which rejects invalid input), the decoder and the streaming
// decoder (which replace invalid bytes with U+FFFD exactly like Rust's String::from_utf8_lossy,
// the Hugging Face decoder's behaviour: one U+FFFD per "maximal subpart" of a broken sequence).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace dsv3 {

// Offset of the first byte that is not part of a valid UTF-8 sequence, or npos when all is valid.
size_t utf8_first_invalid(std::string_view s);

// Appends `in` to `out`, each invalid maximal subpart replaced by U+FFFD. When `final` is false a
// trailing sequence that is incomplete but could still become valid is left unconsumed. Returns
// the number of bytes consumed.
size_t utf8_append_lossy(std::string_view in, std::string& out, bool final);

// `text` with every invalid sequence replaced by U+FFFD (for callers that accept untrusted bytes).
std::string utf8_sanitize(std::string_view text);

}  // namespace dsv3
