// dsv3 convert --to bf16|fp8|int4 IN OUT [--group G] [--int4-all] [--force] [-t N]: FP8 <-> BF16
// checkpoint conversion, and int4 (compressed-tensors pack-quantized) from either.
#include <fmt/format.h>

#include "cli/command.h"
#include "convert/convert.h"
#include "core/error.h"
#include "core/log.h"

namespace dsv3::cli {
namespace {

struct ConvertOpts {
  std::string to, in, out;
  bool force = false, int4_all = false;
  int threads = 0;
  int64_t group = 128;
};

int run_convert(const ConvertOpts& o) {
  const auto to = parse_convert_target(o.to);
  if (!to) fail("--to must be bf16, fp8 or int4 (got '{}')", o.to);
  if (o.threads < 0) fail("-t/--threads must be positive (got {})", o.threads);
  ConvertOptions opt;
  opt.to = *to;
  opt.force = o.force;
  opt.threads = o.threads;
  opt.group = o.group;
  opt.int4_all = o.int4_all;
  const ConvertResult r = convert_checkpoint(o.in, o.out, opt);
  log_info("convert: {} -> {} ({}) done: {} shards written, {} already complete; {:.2f} GB read, {:.2f} GB written "
           "in {:.1f} s ({:.0f} MB/s of input)",
           o.in, o.out, convert_target_name(*to), r.shards_written, r.shards_skipped, r.input_bytes / 1e9,
           r.output_bytes / 1e9, r.seconds, r.seconds > 0 ? r.input_bytes / 1e6 / r.seconds : 0.0);
  return 0;
}

const bool registered = register_command(
    {"convert",
     "Convert a checkpoint between FP8 (E4M3, 128x128 block scales) and BF16, or to INT4 weights "
     "(compressed-tensors pack-quantized, as Kimi-K2 and W4A16 R1 are published), on any CPU; "
     "copies config.json (quantization_config removed/added), tokenizer and other small files",
     [](CLI::App& app) {
       auto o = std::make_shared<ConvertOpts>();
       app.add_option("--to", o->to,
                      "Target: bf16 (dequantise), fp8 (block-quantise) or int4 (symmetric int4 groups with BF16 "
                      "scales amax/7.5; the routed experts, other tensors keep their dtype)")
           ->required();
       app.add_option("--group", o->group, "int4: columns per scale, 32, 64 or 128 (default 128)");
       app.add_flag("--int4-all", o->int4_all,
                    "int4: every Linear of the blocks (attention, dense and shared MLPs too), not only routed experts");
       app.add_option("in", o->in, "Input checkpoint directory")->required();
       app.add_option("out", o->out, "Output directory (new or empty; an unfinished run into it is resumed)")
           ->required();
       app.add_flag("--force", o->force, "Write into an existing non-empty output directory");
       app.add_option("-t,--threads", o->threads, "Threads (default: all cores)");
       return [o] { return run_convert(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
