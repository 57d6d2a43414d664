// Writing checkpoints in the Hugging Face layout: shards model-0000N-of-0000M.safetensors and
// model.safetensors.index.json. Shared by `init` and `convert`.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace dsv3 {

struct ShardPlan {
  std::string file;  // model-00001-of-00004.safetensors
  std::vector<TensorToWrite> tensors;
  uint64_t bytes() const;
};

// Splits `tensors` (in order) into shards of at most max_bytes of data each (a single larger
// tensor gets a shard of its own). A "*_scale_inv" tensor always stays with the tensor before it.
std::vector<ShardPlan> plan_shards(std::vector<TensorToWrite> tensors, uint64_t max_bytes);
std::string shard_file_name(size_t index, size_t count);

// Writes model.safetensors.index.json: {"metadata": {"total_size": N}, "weight_map": {...}}.
void write_index(const std::string& dir, const std::map<std::string, std::string>& weight_map, uint64_t total_size);

}  // namespace dsv3
