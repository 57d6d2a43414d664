#include "io/checkpoint_writer.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

uint64_t ShardPlan::bytes() const {
  uint64_t b = 0;
  for (const auto& t : tensors) b += static_cast<uint64_t>(t.shape.numel()) * dtype_size(t.dtype);
  return b;
}

std::string shard_file_name(size_t index, size_t count) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

std::vector<ShardPlan> plan_shards(std::vector<TensorToWrite> tensors, uint64_t max_bytes) {
  std::vector<ShardPlan> shards;
  uint64_t cur = 0;
  auto ends_with = [](const std::string& s, const char* suf) {
    const size_t n = std::char_traits<char>::length(suf);
    return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
  };
  for (auto& t : tensors) {
    const uint64_t nb = static_cast<uint64_t>(t.shape.numel()) * dtype_size(t.dtype);
    const bool follows = ends_with(t.name, "_scale_inv");
    if (shards.empty() || (!follows && cur > 0 && cur + nb > max_bytes)) {
      shards.emplace_back();
      cur = 0;
    }
    cur += nb;
    shards.back().tensors.push_back(std::move(t));
  }
  for (size_t i = 0; i < shards.size(); ++i) shards[i].file = shard_file_name(i, shards.size());
  return shards;
}

void write_index(const std::string& dir, const std::map<std::string, std::string>& weight_map, uint64_t total_size) {
  nlohmann::ordered_json j;
  j["metadata"] = {{"total_size", total_size}};
  j["weight_map"] = weight_map;
  const std::string path = (std::filesystem::path(dir) / "model.safetensors.index.json").string();
  const std::string tmp = path + ".partial";
  {
    std::ofstream f(tmp);
    f << j.dump(2) << "\n";
    if (!f) fail("{}: write failed", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("{}: cannot rename: {}", path, ec.message());
}

}  // namespace dsv3
