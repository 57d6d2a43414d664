// A second tier for the engine's prefix cache: full 64-token blocks of latent KV, keyed by the
// hash chain of every token up to the block's end, kept beyond memory (on disk, across restarts).
// The engine saves a block when it registers it in the in-memory cache and asks for one when a
// prompt's next block is not in memory.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace dsv3 {

class PrefixStore {
 public:
  virtual ~PrefixStore() = default;
  // block: [layers, 64, dim] floats. Called on the engine's step thread: queue, do not block.
  virtual void save(uint64_t key, bool mtp_valid, std::vector<float> block) = 0;
  // Fills `out` ([layers, 64, dim]) when `key` is stored and intact; false otherwise.
  virtual bool load(uint64_t key, std::span<float> out, bool* mtp_valid) = 0;
};

}  // namespace dsv3
