// `dsv3 convert`: FP8 (E4M3, 128x128 block scales, as DeepSeek releases it) <-> BF16 checkpoint
// conversion on any CPU. Streams one shard at a time (parallel inside a shard), writes each shard
// under a temporary name and renames it when complete, resumes an interrupted run by skipping
// finished shards, and writes the index and config.json last. See README "Converting".
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3 {

enum class ConvertTo { kBF16, kFP8, kINT4 };
std::optional<ConvertTo> parse_convert_target(std::string_view s);  // "bf16" / "fp8" / "int4"
const char* convert_target_name(ConvertTo t);

struct ConvertOptions {
  ConvertTo to = ConvertTo::kBF16;
  // kINT4: compressed-tensors pack-quantized, symmetric int4 in groups of `group` columns with
  // BF16 scales (amax / 7.5); the routed experts only, or every Linear of the blocks with
  // int4_all (embeddings, heads, router and MTP eh_proj always keep their dtype).
  int64_t group = 128;
  bool int4_all = false;
  bool force = false;  // write into an existing non-empty output directory
  int threads = 0;     // OpenMP threads; 0 keeps the default
  // Progress display: -1 auto (a live line when stderr is a terminal), 0 per-shard lines, 1 live.
  int progress = -1;
  // Simulates an interruption for tests: throws dsv3::Error after writing this many shards.
  int stop_after_shards = -1;
};

struct ConvertResult {
  size_t shards_written = 0, shards_skipped = 0;
  uint64_t input_bytes = 0;   // tensor data read for the shards written
  uint64_t output_bytes = 0;  // tensor data written
  double seconds = 0;
};

// Converts checkpoint directory `in_dir` into `out_dir`. Throws dsv3::Error (naming the file
// and the problem) on invalid input, IN == OUT, a non-empty OUT without force (nothing touched),
// converting to the dtype the input already has, or an I/O failure (no partial shard is left).
ConvertResult convert_checkpoint(const std::string& in_dir, const std::string& out_dir, const ConvertOptions& opt);

// The FP8 block quantisation block of DeepSeek-V3's config.json.
std::string fp8_quantization_config_json();

}  // namespace dsv3
