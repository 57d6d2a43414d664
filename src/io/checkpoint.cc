#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/log.h"

namespace dsv3 {

namespace fs = std::filesystem;

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& dir) {
  auto ck = std::unique_ptr<Checkpoint>(new Checkpoint());
  ck->dir_ = dir;
  if (!fs::is_directory(dir)) fail("{}: not a directory", dir);
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  if (fs::exists(index)) {
    ck->has_index_ = true;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(index.string()));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: malformed JSON: {}", index.string(), e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("{}: no \"weight_map\" object", index.string());
    std::set<std::string> seen;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("{}: weight_map entry '{}' is not a file name", index.string(), it.key());
      const std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos || f == ".." || f.empty())
        fail("{}: weight_map entry '{}' names a file outside the directory: '{}'", index.string(), it.key(), f);
      weight_map[it.key()] = f;
      if (seen.insert(f).second) files.push_back(f);
    }
    std::sort(files.begin(), files.end());
  } else {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    if (files.empty()) fail("{}: no model.safetensors.index.json and no *.safetensors file", dir);
  }
  std::map<std::string, const SafetensorsFile*> by_file;
  for (const auto& f : files) {
    const fs::path p = fs::path(dir) / f;
    if (!fs::exists(p)) fail("{}: shard '{}' named in the index does not exist", dir, f);
    ck->shards_.push_back(std::make_unique<SafetensorsFile>(p.string()));
    by_file[f] = ck->shards_.back().get();
  }
  for (const auto& s : ck->shards_) {
    const std::string fname = fs::path(s->path()).filename().string();
    for (const auto& t : s->tensors()) {
      if (ck->has_index_) {
        auto it = weight_map.find(t.name);
        // An index that leaves out a tensor its shard holds is inconsistent: refuse it here with
        // one message naming the index, rather than failing later on a "missing" tensor.
        if (it == weight_map.end())
          fail("{}: tensor '{}' of shard '{}' is not listed in the weight_map", index.string(), t.name, fname);
        if (it->second != fname) continue;  // listed under another shard: that one is authoritative
      }
      if (ck->by_name_.count(t.name)) fail("{}: tensor '{}' appears in more than one shard", s->path(), t.name);
      ck->by_name_[t.name] = ck->all_.size();
      ck->all_.push_back({s.get(), &t});
    }
  }
  for (const auto& [name, f] : weight_map)
    if (!ck->by_name_.count(name))
      fail("{}: index lists tensor '{}' in '{}' but that shard does not contain it", index.string(), name, f);
  return ck;
}

const TensorRef* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &all_[it->second];
}

}  // namespace dsv3
