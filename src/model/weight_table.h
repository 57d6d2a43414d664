// The single list of tensors a DeepSeek-V3-family checkpoint holds, derived from its config.
// Loading, validation, `info`, `init`, conversion and (later) training all walk this list
// through for_each_weight instead of repeating it.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace dsv3 {

class Checkpoint;

enum class WeightKind : uint8_t {
  kLinear,     // 2-D projection; FP8 block-quantised (with _scale_inv) in the official checkpoint
  kEmbedding,  // embed_tokens (main and MTP copies): stays BF16
  kHead,       // lm_head, shared_head.head: stays BF16
  kNorm,       // RMSNorm weights: stay BF16
  kRouter,     // mlp.gate.weight [E, hidden]: stays BF16
  kBias,       // mlp.gate.e_score_correction_bias [E]: F32
  kEhProj,     // MTP eh_proj [hidden, 2*hidden]: stays BF16
};

struct WeightSpec {
  std::string name;
  Shape shape;
  WeightKind kind;
  int layer = -1;  // -1 for model-level tensors
  int expert = -1;  // routed expert index, -1 otherwise
  bool fp8_quantized() const { return kind == WeightKind::kLinear; }
};

// compressed-tensors pack-quantized names of weight `name` ("X.weight" -> "X.weight_packed" ...).
inline std::string int4_packed_name(const std::string& name) { return name + "_packed"; }
inline std::string int4_scale_name(const std::string& name) { return name + "_scale"; }
inline std::string int4_shape_name(const std::string& name) { return name + "_shape"; }
// Name of the FP8 scale tensor of weight `name`.
inline std::string scale_inv_name(const std::string& name) { return name + "_scale_inv"; }
// Shape of the FP8 scale of a [rows, cols] weight: [ceil(rows/128), ceil(cols/128)].
Shape scale_inv_shape(const Shape& weight);

void for_each_weight(const ModelConfig& cfg, const std::function<void(const WeightSpec&)>& visit);
std::vector<WeightSpec> weight_table(const ModelConfig& cfg);

// Checks a checkpoint against the table: every tensor present with the right shape and a
// usable dtype; FP8 weights with a correctly shaped F32 _scale_inv. Throws dsv3::Error naming
// the shard file and the tensor for the first problem; warns (stderr) about unexpected extras.
void validate_checkpoint(const ModelConfig& cfg, const Checkpoint& ck);

// config.json + the checkpoint it describes, both validated: what every command that loads a
// model starts from.
struct ModelFiles {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  ModelFiles();
  ModelFiles(ModelFiles&&) noexcept;
  ~ModelFiles();
};
ModelFiles open_model_files(const std::string& dir);

// Summary numbers shown by `dsv3 info`.
struct CheckpointStats {
  int64_t total_parameters = 0;  // elements of every tensor except scales (int4: 8 per packed int32)
  int64_t tensors = 0;           // every tensor including scales
  int64_t bytes = 0;             // tensor data bytes
  std::vector<std::pair<std::string, int64_t>> dtypes;  // dtype name -> tensor count
};
CheckpointStats checkpoint_stats(const Checkpoint& ck);

// Parameters one token touches in the main model (MTP excluded): everything except the routed
// experts, plus num_experts_per_tok experts per MoE layer.
int64_t active_parameters_per_token(const ModelConfig& cfg);
int64_t expected_parameters(const ModelConfig& cfg);  // sum over the table

}  // namespace dsv3
