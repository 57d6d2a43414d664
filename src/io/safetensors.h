// safetensors: [u64 little-endian header length N][N bytes of JSON header][data].
// Header: {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//          "__metadata__": {"format": "pt"}}; offsets are relative to the start of data.
// Every header is validated before any length or offset in it is used.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace dsv3 {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the data section
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order (by begin offset)
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
};

// Parses and validates the header of a safetensors image of `size` bytes (the whole file, or
// at least its header). `file_size` is the full file size used for range checks. `what` names
// the file in error messages. This is the fuzz target's entry point.
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size,
                                           const std::string& what);

class SafetensorsFile {
 public:
  // mmaps and validates; throws dsv3::Error naming the file and the problem.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return map_.path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(std::string_view name) const;
  const uint8_t* data(const TensorInfo& t) const { return map_.data() + header_.data_start + t.begin; }
  size_t file_size() const { return map_.size(); }
  // Drops the pages of [p, p+n) inside this file from the resident set (MappedFile::release).
  void release(const void* p, size_t n) const { map_.release(p, n); }
  size_t resident_bytes() const { return map_.resident_bytes(); }

 private:
  MappedFile map_;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t> index_;
};

// Streaming writer. The header is fixed first from the tensor list, the file's space is reserved
// (so a full disk fails cleanly before any data is written), tensors are filled into a bounded
// staging buffer and written in order; the file appears under its final name only after
// everything was written.
struct TensorToWrite {
  std::string name;
  DType dtype;
  Shape shape;
  // Fills nbytes = numel * dtype_size bytes at dst. May itself run in parallel.
  std::function<void(uint8_t* dst)> fill;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace dsv3
