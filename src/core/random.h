// Counter-based random numbers: any element can be made by any thread, so results never
// depend on the thread count (random init, the trainer's data order).
#pragma once
#include <cstdint>

namespace dsv3 {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Approximately standard normal from one hash: Irwin-Hall sum of four 16-bit uniforms,
// centred and scaled to unit variance.
inline float normal_at(uint64_t key, uint64_t i) {
  const uint64_t h = splitmix64(key ^ (i * 0xd1b54a32d192ed03ull));
  const float s = static_cast<float>((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48));
  return (s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

}  // namespace dsv3
