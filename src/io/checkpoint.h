// A Hugging Face checkpoint directory: config.json plus either model.safetensors.index.json
// ({"metadata": {"total_size"}, "weight_map": {tensor: shard}}) with its shards, or a single
// *.safetensors file. All shards are mmap'd and validated on open.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/safetensors.h"

namespace dsv3 {

struct TensorRef {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* info = nullptr;
  const uint8_t* data() const { return file->data(*info); }
};

class Checkpoint {
 public:
  // Throws dsv3::Error naming the file and the problem (missing index/shard, bad header,
  // an index entry whose shard lacks the tensor, a shard tensor the index leaves out, the same
  // tensor in two shards).
  static std::unique_ptr<Checkpoint> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // nullptr when absent.
  const TensorRef* find(std::string_view name) const;
  // Every tensor, in shard order then file order.
  const std::vector<TensorRef>& tensors() const { return all_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  bool has_index() const { return has_index_; }

 private:
  std::string dir_;
  bool has_index_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<TensorRef> all_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace dsv3
