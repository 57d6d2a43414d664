// dsv3 data: a corpus -> a token data directory for `dsv3 train` (format: data/token_data.h).
//   dsv3 data --ids FILE.jsonl --out DATA [--vocab-size N] [--val-fraction F] [--seed S] [--force]
//   dsv3 data -m MODEL_OR_TOKENIZER_DIR --out DATA [...] [--no-bos] [--no-eos] [--split-blank-lines] FILES...
#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "data/corpus.h"

namespace dsv3::cli {
namespace {

int run_data(const CorpusOptions& o) {
  const CorpusSummary s = build_token_data(o);
  const auto& d = s.data;
  log_info("data: {} documents ({} train, {} val), {} tokens train, {} tokens val, vocab_size {} -> {}",
           d.train_docs + d.val_docs, d.train_docs, d.val_docs, d.train_tokens, d.val_tokens, d.vocab_size, o.out);
  log_info("data: {:.1f} MB of input in {:.1f} s ({:.1f} MB/s){}", static_cast<double>(s.input_bytes) / 1e6, s.seconds,
           s.seconds > 0 ? static_cast<double>(s.input_bytes) / 1e6 / s.seconds : 0.0,
           s.skipped_empty ? fmt::format("; {} empty document(s) skipped", s.skipped_empty) : "");
  return 0;
}

const bool registered = register_command(
    {"data", "Make training data: token ids (--ids) or text files tokenized with -m, split into train/val",
     [](CLI::App& app) {
       auto o = std::make_shared<CorpusOptions>();
       auto no_bos = std::make_shared<bool>(false), no_eos = std::make_shared<bool>(false);
       app.footer(
           "Two input modes:\n"
           "  dsv3 data --ids FILE.jsonl --out DATA        each line a JSON list of token ids (one document)\n"
           "  dsv3 data -m DIR --out DATA FILES...        text tokenized with DIR's tokenizer.json: a *.jsonl\n"
           "      file holds one {\"text\": ...} object per line (one document each); any other file is one\n"
           "      document, or one per blank-line-separated paragraph with --split-blank-lines. Each document\n"
           "      gets BOS before and EOS after (ids from tokenizer_config.json, else config.json). Special-token\n"
           "      text inside the data is tokenized as plain text; invalid UTF-8 becomes U+FFFD.\n"
           "DATA gets train.bin and val.bin (32-byte header + uint32 ids, documents packed back to back) and\n"
           "meta.json (written last: a directory without it was interrupted). A document goes to val with\n"
           "probability --val-fraction, decided by a hash of (seed, document index); a lone document is\n"
           "always training data.");
       app.add_option("--ids", o->ids_file, "JSON-lines file of token id lists (instead of text FILES)")
           ->type_name("FILE.jsonl");
       app.add_option("-m,--model", o->tokenizer, "Model or tokenizer folder (tokenizer.json) for text FILES")
           ->type_name("DIR");
       app.add_option("--out", o->out, "Output directory (must be new or empty unless --force)")
           ->required()
           ->type_name("DIR");
       app.add_option("--vocab-size", o->vocab_size,
                      "vocab_size recorded in meta.json; every id must be below it (default: the tokenizer's "
                      "size, or max id + 1 with --ids)")
           ->type_name("N");
       app.add_option("--val-fraction", o->val_fraction, "Share of documents held out for validation, in [0, 1)")
           ->capture_default_str();
       app.add_option("--seed", o->seed, "Seed of the train/val split")->capture_default_str();
       app.add_flag("--force", o->force, "Write into a non-empty DATA directory, replacing its token data");
       app.add_flag("--no-bos", *no_bos, "Do not prepend BOS to each text document");
       app.add_flag("--no-eos", *no_eos, "Do not append EOS to each text document");
       app.add_flag("--special", o->special,
                    "Match special tokens written in the text (chat data rendered with the chat template)");
       app.add_flag("--split-blank-lines", o->split_blank_lines,
                    "Each blank-line-separated paragraph of a plain text file is one document");
       app.add_option("--progress", o->progress, "Progress on stderr: 1 live line, 0 none, -1 live on a terminal")
           ->capture_default_str();
       app.add_option("files", o->files, "Text inputs (*.jsonl with a \"text\" field per line, or plain text)")
           ->type_name("FILES");
       return [o, no_bos, no_eos] {
         o->bos = !*no_bos;
         o->eos = !*no_eos;
         if (!o->ids_file.empty() && (*no_bos || *no_eos || o->split_blank_lines || o->special))
           fail("--no-bos, --no-eos, --special and --split-blank-lines apply to text FILES, not to --ids");
         return run_data(*o);
       };
     }});

}  // namespace
}  // namespace dsv3::cli
