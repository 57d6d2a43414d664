// Trains a byte-level BPE tokenizer in DeepSeek-V3's layout (`dsv3 tokenizer train`).
//
// The algorithm is Hugging Face's BpeTrainer: texts are split into words by the DeepSeek-V3
// pre-tokenizer (the same PreTokenizer code that encodes), words are counted, each word starts
// as its bytes, and the most frequent adjacent pair (ties: the smallest pair of ids) is merged
// until the vocab is full. Pair counts are updated incrementally: a max-heap of (count, pair,
// words containing it) with lazy invalidation, so each merge only touches the words that contain
// the pair. Same words in, same merges out as HF's trainer (tests/e2e/tokenizer_train_hf_parity.sh).
//
// Id layout (what write_trained_tokenizer writes, the same as DeepSeek-V3's tokenizer.json):
//   0, 1, 2        BOS, EOS, pad (in model.vocab and added_tokens, special)
//   3 .. 258       the 256 byte symbols, ordered by the code point of their byte-level character
//                  (printable bytes '!'..'~', '¡'..'ÿ' first, then the 68 remapped ones) - the order
//                  HF's trainer gives its alphabet and that DeepSeek-V3's ids 3..258 have
//   259 ..         merged tokens in merge order
//   last 15 ids    FIM, User/Assistant, <|EOT|> and tool tokens (added_tokens only, like
//                  DeepSeek-V3's 128800..128814)
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3 {

struct BpeTrainerOptions {
  int64_t vocab_size = 0;     // total number of ids, added tokens included
  int64_t min_frequency = 0;  // stop when the best pair occurs fewer times (HF's default: 0)
  int threads = 1;            // for counting words (pre-tokenization)
  bool progress = false;      // progress lines on stderr
};

struct TrainedBpe {
  // Raw bytes of the model.vocab entries by id: 0..2 hold the BOS/EOS/pad contents, then byte
  // symbols and merged tokens. The trailing added tokens follow at ids tokens.size()...
  std::vector<std::string> tokens;
  std::vector<std::pair<int32_t, int32_t>> merges;  // (left id, right id) in rank order
  int64_t total_size() const;                        // tokens + trailing added tokens
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options);
  ~BpeTrainer();
  // 3 leading + 256 bytes + 15 trailing: a vocab of this size has no merges.
  static int64_t min_vocab_size();

  // Counts the words of one text (one document: pre-tokenization never joins two texts).
  // Invalid UTF-8 is replaced by U+FFFD first; added-token strings ("<｜User｜>") are cut out
  // as encode() does, so they never become part of a word.
  void add_text(std::string_view text);
  // Streams each file (a document each) in chunks cut where pre-tokenization is unaffected by
  // the cut, counting with options.threads threads. Throws dsv3::Error naming an unreadable file.
  void add_files(const std::vector<std::string>& paths);

  uint64_t bytes_seen() const;
  size_t distinct_words() const;

  // Runs the merges. When the texts run out of pairs (or of pairs with min_frequency) before the
  // vocab is full, the result is smaller than vocab_size and a warning says so.
  TrainedBpe train();

 private:
  struct Counts;
  BpeTrainerOptions o_;
  std::unique_ptr<Counts> counts_;
};

// tokenizer.json text for `t` (structure of DeepSeek-V3's: normalizer, pre_tokenizer,
// post_processor, decoder and model options as there; merges in the "a b" form).
std::string trained_tokenizer_json(const TrainedBpe& t);
// tokenizer_config.json text: DeepSeek-V3's, with pad_token <｜▁pad▁｜> and its chat template.
std::string trained_tokenizer_config_json();
// Fails unless `dir` is absent, an empty folder, or any folder with `force` (checked before
// training too, so a long run does not end in this error).
void check_tokenizer_out_dir(const std::string& dir, bool force);
// Writes both files into `dir` (created if needed), each to a temporary name then renamed, so a
// reader never sees half a file. `dir` must be empty or absent unless `force`.
void write_trained_tokenizer(const TrainedBpe& t, const std::string& dir, bool force);

}  // namespace dsv3
