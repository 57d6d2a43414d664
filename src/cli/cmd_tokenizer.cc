// `dsv3 tokenizer train`: trains a byte-level BPE tokenizer in DeepSeek-V3's layout from text
// files (see tokenizer/bpe_trainer.h for the algorithm and the id layout).
#include <fmt/format.h>

#include <chrono>
#include <thread>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "tokenizer/bpe_trainer.h"

namespace dsv3::cli {
namespace {

struct TrainOptions {
  int64_t vocab = 0;
  std::string out;
  int64_t min_frequency = 0;
  int threads = 0;
  bool force = false;
  std::vector<std::string> files;
};

int run_train(const TrainOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  BpeTrainerOptions opts;
  opts.vocab_size = o.vocab;
  opts.min_frequency = o.min_frequency;
  opts.threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  opts.progress = log_level() >= LogLevel::kInfo;
  BpeTrainer trainer(opts);  // checks the vocab size
  check_tokenizer_out_dir(o.out, o.force);
  trainer.add_files(o.files);
  if (trainer.distinct_words() == 0) fail("the input files hold no text");
  TrainedBpe result = trainer.train();
  write_trained_tokenizer(result, o.out, o.force);
  log_info("tokenizer train: wrote {}/tokenizer.json ({} ids, {} merges) and tokenizer_config.json in {:.1f} s", o.out,
           result.total_size(), result.merges.size(),
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

const bool kTokenizer = register_command(
    {"tokenizer", "Tokenizer tools: `train` a byte-level BPE in DeepSeek-V3's layout", [](CLI::App& app) {
       app.require_subcommand(1);
       auto o = std::make_shared<TrainOptions>();
       CLI::App* train = app.add_subcommand("train", "Train a byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json)");
       train->add_option("--vocab", o->vocab, "Total vocab size, special and added tokens included")
           ->required()
           ->check(CLI::PositiveNumber);
       train->add_option("--out", o->out, "Output folder (must be new or empty unless --force)")->required();
       train->add_option("--min-frequency", o->min_frequency, "Stop when the best pair occurs fewer times (default 0)")
           ->check(CLI::NonNegativeNumber);
       train->add_option("-t,--threads", o->threads, "Threads for counting words (default: all cores)");
       train->add_flag("--force", o->force, "Write into a non-empty output folder");
       train->add_option("files", o->files, "Text files (UTF-8), each one document")->required()->check(CLI::ExistingFile);
       return Runner([o] { return run_train(*o); });
     }});

}  // namespace
}  // namespace dsv3::cli
