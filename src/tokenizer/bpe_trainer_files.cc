// tokenizer.json and tokenizer_config.json of a trained tokenizer, in the structure of
// DeepSeek-V3's files (key order included), built from the constants in deepseek_v3.h.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/deepseek_v3.h"

namespace dsv3 {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

ojson added_token(int64_t id, const deepseek_v3::AddedTokenSpec& t) {
  return ojson{{"id", id},          {"content", t.content}, {"single_word", false}, {"lstrip", false},
               {"rstrip", false},   {"normalized", t.normalized}, {"special", t.special}};
}

ojson pre_tokenizer() {
  ojson steps = ojson::array();
  for (std::string_view p : deepseek_v3::kSplitPatterns)
    steps.push_back(ojson{{"type", "Split"}, {"pattern", {{"Regex", p}}}, {"behavior", "Isolated"}, {"invert", false}});
  // The regexes above already split; ByteLevel only maps bytes to its alphabet.
  steps.push_back(ojson{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  return ojson{{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
}

ojson byte_level(bool trim_offsets) {
  return ojson{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", trim_offsets}, {"use_regex", true}};
}

// Appends to a JSON object without ordered_map's duplicate-key scan, which is quadratic over a
// vocab of thousands of entries; keys are unique by construction.
void append_unique(ojson& object, std::string key, ojson value) {
  auto& container = static_cast<ojson::object_t::Container&>(*object.get_ptr<ojson::object_t*>());
  container.emplace_back(std::move(key), std::move(value));
}

std::string vocab_text(const TrainedBpe& t, size_t id) {
  // The leading specials are written as themselves (as in DeepSeek-V3), the rest byte-level.
  return id < deepseek_v3::kLeadingTokens.size() ? t.tokens[id] : to_byte_level(t.tokens[id]);
}

ojson config_token(std::string_view content) {
  return ojson{{"__type", "AddedToken"}, {"content", content}, {"lstrip", false},
               {"normalized", true},     {"rstrip", false},    {"single_word", false}};
}

void write_atomic(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("{}: cannot create", tmp.string());
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.flush();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      fail("{}: write failed (disk full?)", tmp.string());
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail("{}: cannot rename {} to it: {}", path.string(), tmp.string(), ec.message());
  }
}

}  // namespace

std::string trained_tokenizer_json(const TrainedBpe& t) {
  ojson added = ojson::array();
  for (size_t i = 0; i < deepseek_v3::kLeadingTokens.size(); ++i)
    added.push_back(added_token(static_cast<int64_t>(i), deepseek_v3::kLeadingTokens[i]));
  for (size_t i = 0; i < deepseek_v3::kTrailingTokens.size(); ++i)
    added.push_back(added_token(static_cast<int64_t>(t.tokens.size() + i), deepseek_v3::kTrailingTokens[i]));

  ojson vocab = ojson::object();
  for (size_t id = 0; id < t.tokens.size(); ++id) append_unique(vocab, vocab_text(t, id), static_cast<int64_t>(id));
  // "a b" form: byte-level symbols never contain a space (0x20 is written as 'Ġ').
  ojson merges = ojson::array();
  merges.get_ref<ojson::array_t&>().reserve(t.merges.size());
  for (const auto& [a, b] : t.merges) merges.push_back(vocab_text(t, a) + " " + vocab_text(t, b));

  ojson model = ojson::object();
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = nullptr;
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = false;
  model["byte_fallback"] = false;
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);

  ojson doc = ojson::object();
  doc["version"] = "1.0";
  doc["truncation"] = nullptr;
  doc["padding"] = nullptr;
  doc["added_tokens"] = std::move(added);
  doc["normalizer"] = ojson{{"type", "Sequence"}, {"normalizers", ojson::array()}};
  doc["pre_tokenizer"] = pre_tokenizer();
  doc["post_processor"] = byte_level(false);
  doc["decoder"] = byte_level(true);
  doc["model"] = std::move(model);
  return doc.dump(2) + "\n";
}

std::string trained_tokenizer_config_json() {
  const auto& lead = deepseek_v3::kLeadingTokens;
  ojson c = ojson::object();
  c["add_bos_token"] = true;
  c["add_eos_token"] = false;
  c["bos_token"] = config_token(lead[0].content);
  c["clean_up_tokenization_spaces"] = false;
  c["eos_token"] = config_token(lead[1].content);
  c["legacy"] = true;
  c["model_max_length"] = deepseek_v3::kModelMaxLength;
  // DeepSeek-V3 pads with EOS; a trained tokenizer has its own pad token at id 2, so use it.
  c["pad_token"] = config_token(lead[2].content);
  c["sp_model_kwargs"] = ojson::object();
  c["unk_token"] = nullptr;
  c["tokenizer_class"] = "LlamaTokenizerFast";
  c["chat_template"] = deepseek_v3::kChatTemplate;
  return c.dump(2) + "\n";
}

void check_tokenizer_out_dir(const std::string& dir, bool force) {
  fs::path d(dir);
  std::error_code ec;
  if (!fs::exists(d, ec)) return;
  if (!fs::is_directory(d, ec)) fail("{}: exists and is not a folder", dir);
  if (!force && !fs::is_empty(d, ec)) fail("{}: folder is not empty (use --force to overwrite)", dir);
}

void write_trained_tokenizer(const TrainedBpe& t, const std::string& dir, bool force) {
  check_tokenizer_out_dir(dir, force);
  std::error_code ec;
  fs::path d(dir);
  if (!fs::exists(d, ec) && !fs::create_directories(d, ec) && ec)
    fail("{}: cannot create folder: {}", dir, ec.message());
  write_atomic(d / "tokenizer_config.json", trained_tokenizer_config_json());
  write_atomic(d / "tokenizer.json", trained_tokenizer_json(t));
}

}  // namespace dsv3
