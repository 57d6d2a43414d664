// GPT-2's byte-level alphabet (Hugging Face's ByteLevel pre-tokenizer/decoder): every byte is
// written as one visible character so that vocab entries and merges are printable strings.
// Shared by the loader (byte-level text -> bytes) and the trainer (bytes -> byte-level text).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

// bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes are shifted to
// U+0100.. in byte order.
std::array<uint32_t, 256> byte_to_char();
// Appends code point cp (< U+10000) as UTF-8.
void append_utf8(std::string& s, uint32_t cp);
// Raw bytes -> their byte-level spelling ("Ġthe" for " the").
std::string to_byte_level(std::string_view bytes);

}  // namespace dsv3
