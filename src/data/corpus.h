// `dsv3 data`: turns a corpus (token id lists, or text files tokenized here) into a token data
// directory (token_data.h), streaming document by document.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/token_writer.h"

namespace dsv3 {

class Tokenizer;

struct CorpusOptions {
  std::string out;
  bool force = false;
  double val_fraction = 0.05;
  uint64_t seed = 0;
  int64_t vocab_size = 0;  // 0: tokenizer size (text) or max id + 1 (ids)
  int progress = -1;       // -1: a live line when stderr is a terminal; 0: none; 1: live line

  // Ids mode: a JSON-lines file, one JSON list of ids (one document) per line.
  std::string ids_file;

  // Text mode: tokenizer folder (tokenizer.json, tokenizer_config.json, maybe a model's
  // config.json) or tokenizer.json itself, and the inputs: *.jsonl files with a "text" field per
  // line, any other file is plain text (one document, or one per paragraph).
  std::string tokenizer;
  std::vector<std::string> files;
  bool bos = true, eos = true, split_blank_lines = false;
  // Match special/added tokens written in the text (chat data rendered with its template);
  // off by default: corpus text is untrusted and "<｜User｜>" in it is just text.
  bool special = false;
};

struct CorpusSummary {
  TokenDataSummary data;
  int64_t skipped_empty = 0;    // empty texts / id lists (no document written)
  int64_t invalid_utf8 = 0;     // documents whose invalid UTF-8 was replaced by U+FFFD
  uint64_t input_bytes = 0;
  double seconds = 0;
};

// Runs the whole conversion; throws dsv3::Error naming the input file (and line) at fault.
// Exactly one of ids_file / files must be given.
CorpusSummary build_token_data(const CorpusOptions& o);

// The BOS/EOS ids text mode adds: tokenizer_config.json's bos_token/eos_token when that file is
// next to tokenizer.json, else config.json's bos_token_id/eos_token_id (the first of a list),
// else the tokenizer's defaults (its first two added tokens).
struct SpecialIds {
  int32_t bos = 0, eos = 1;
};
SpecialIds resolve_special_ids(const std::string& tokenizer_path, const Tokenizer& tok);

// Paragraphs of `text`: maximal runs of lines that are not blank (empty or whitespace only), each
// from the start of its first line to the end of its last line without the line break.
std::vector<std::string_view> split_paragraphs(std::string_view text);

}  // namespace dsv3
