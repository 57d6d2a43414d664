// Helpers shared by the commands that run a model.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/model.h"

namespace dsv3::cli {

struct ModelArgs {
  std::string dir;
  int threads = 0;
  int64_t ctx = 0;
  std::string dump_dir;
  std::string kv_dtype = "f32";
  std::string prefill = "f32";
};
// -m/--model, -t/--threads, --ctx, --kv-dtype, --prefill, --dump
void add_model_args(CLI::App& app, ModelArgs& a);
// Under mpirun (expert parallelism) every rank loads its share; on ranks > 0 this call serves
// rank 0's expert all-to-alls until rank 0 is done and then throws WorkerDone, which main()
// turns into a clean exit: the command itself runs on rank 0 only.
std::unique_ptr<Model> load_model(const ModelArgs& a, int64_t max_seqs = 1);
struct WorkerDone {};

// "1,2,3" -> {1, 2, 3}; throws dsv3::Error naming the bad entry.
std::vector<int32_t> parse_ids(const std::string& s);

}  // namespace dsv3::cli
