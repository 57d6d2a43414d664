// The non-tensor side of a conversion: config.json, the small files beside the weights, and
// the state file that lets an interrupted run resume.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "convert/convert.h"
#include "io/mapped_file.h"  // write_file_atomic

namespace dsv3 {

// config.json of the converted checkpoint: the input's JSON object (key order kept) with
// quantization_config removed (bf16) or set to the FP8 block scheme (fp8); nothing else changes.
std::string converted_config(const std::string& in_config_path, const ConvertOptions& opt);

// Copies every small non-weight file of in_dir (tokenizer, generation_config.json, README, code,
// subfolders) to out_dir: not *.safetensors, not the index, not config.json, nothing hidden,
// nothing inside `skip` (the output directory when it lies inside the input).
void copy_aux_files(const std::string& in_dir, const std::string& out_dir, const std::string& skip);

// Identity of a conversion: canonical input path, target and the input shards' sizes and
// mtimes. Written into OUT before the first shard and removed after config.json, so its
// presence marks an unfinished run of exactly this conversion, which a rerun may resume.
struct ConvertState {
  std::string input;
  std::string to;
  std::map<std::string, std::string> shards;  // file -> "size:mtime"
  bool operator==(const ConvertState&) const = default;
  std::string to_json() const;
  static bool parse(const std::string& text, ConvertState* out);
};
constexpr const char* kStateFile = ".dsv3-convert-state.json";

}  // namespace dsv3
