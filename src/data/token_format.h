// The byte layout of a token file (see token_data.h), shared by the reader and the writer.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv3 {

inline constexpr char kTokenMagic[8] = {'D', 'S', 'V', '3', 'T', 'O', 'K', '1'};
inline constexpr const char* kTokenFormat = "dsv3-tokens-v1";  // meta.json "format"

// 32 bytes, little-endian, followed by `tokens` uint32 ids.
struct TokenHeader {
  char magic[8];
  uint64_t tokens;
  uint64_t docs;
  uint64_t reserved;  // 0
};
inline constexpr size_t kTokenHeaderBytes = 32;
static_assert(sizeof(TokenHeader) == kTokenHeaderBytes);

}  // namespace dsv3
