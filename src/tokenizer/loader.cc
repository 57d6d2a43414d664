// Reads a Hugging Face tokenizer.json for byte-level BPE and rejects anything this tokenizer
// would not reproduce exactly (other models, normalizers, pre-tokenizers or decoders).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/string_map.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_json.h"

namespace dsv3 {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Largest id accepted; keeps a malformed file from asking for a huge table.
constexpr int64_t kMaxId = 1 << 24;

// The GPT-2 split that ByteLevel applies when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("{}: cannot open", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const fs::path& p) {
  std::string text = read_file(p);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", p.string(), e.what());
  }
}

bool is_null_or(const json& j, const char* key, const json& allowed) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() || *it == allowed;
}

}  // namespace

class TokenizerLoader {
 public:
  TokenizerLoader(Tokenizer& t, std::string file) : t_(t), file_(std::move(file)) {}

  void load(const TokenizerJson& tj, const json* config) {
    const json& root = tj.rest;
    if (!root.is_object()) fail("{}: top level is not an object", file_);
    check_normalizer(root);
    check_decoder(root);
    t_.pre_ = std::make_unique<PreTokenizer>();
    auto pre = root.find("pre_tokenizer");
    if (pre == root.end() || pre->is_null()) fail("{}: pre_tokenizer: missing (byte-level BPE needs ByteLevel)", file_);
    bool byte_level = false;
    add_pre_tokenizer(*pre, "pre_tokenizer", byte_level);
    if (!byte_level) fail("{}: pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)", file_);

    auto model = root.find("model");
    if (model == root.end() || !model->is_object()) fail("{}: model: missing", file_);
    load_model(*model, tj);
    load_added(root);
    t_.set_vocab_limit(Tokenizer::kDefaultVocabLimit);
    for (uint8_t f : t_.flags_) t_.num_tokens_ += (f & Tokenizer::kHasToken) ? 1 : 0;
    load_config(config);
  }

 private:
  [[noreturn]] void bad(const std::string& field, const std::string& what) const {
    fail("{}: {}: {}", file_, field, what);
  }

  void check_normalizer(const json& root) {
    auto n = root.find("normalizer");
    if (n == root.end() || n->is_null()) return;
    // An empty Sequence is the identity (what DeepSeek-V3 ships); anything else changes text.
    if (n->value("type", "") == "Sequence" && n->contains("normalizers") && (*n)["normalizers"].is_array() &&
        (*n)["normalizers"].empty())
      return;
    bad("normalizer", "unsupported (only none or an empty Sequence)");
  }

  void check_decoder(const json& root) {
    auto d = root.find("decoder");
    if (d == root.end() || !d->is_object() || d->value("type", "") != "ByteLevel")
      bad("decoder", "unsupported (only ByteLevel)");
  }

  void add_pre_tokenizer(const json& p, const std::string& field, bool& byte_level) {
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string()) bad(field, "not an object with a type");
    std::string type = p["type"];
    if (byte_level) bad(field, "steps after ByteLevel are not supported");
    if (type == "Sequence") {
      auto steps = p.find("pretokenizers");
      if (steps == p.end() || !steps->is_array()) bad(field, "Sequence without a pretokenizers array");
      for (size_t i = 0; i < steps->size(); ++i)
        add_pre_tokenizer((*steps)[i], fmt::format("{}.pretokenizers[{}]", field, i), byte_level);
    } else if (type == "Split") {
      if (p.value("behavior", "") != "Isolated") bad(field, "Split behavior must be Isolated");
      if (!is_null_or(p, "invert", false)) bad(field, "Split with invert is not supported");
      auto pat = p.find("pattern");
      if (pat == p.end() || !pat->is_object()) bad(field, "Split without a pattern");
      std::string where = fmt::format("{}: {}.pattern", file_, field);
      if (pat->contains("Regex") && (*pat)["Regex"].is_string()) {
        try {
          t_.pre_->add_split(translate_onig_pattern((*pat)["Regex"].get<std::string>()), where);
        } catch (const Error& e) {
          fail("{}: {}", where, e.what());
        }
      } else if (pat->contains("String") && (*pat)["String"].is_string()) {
        t_.pre_->add_split(escape_literal((*pat)["String"].get<std::string>()), where);
      } else {
        bad(field, "pattern is neither {\"Regex\": ...} nor {\"String\": ...}");
      }
    } else if (type == "ByteLevel") {
      if (!is_null_or(p, "add_prefix_space", false)) bad(field, "ByteLevel add_prefix_space is not supported");
      if (p.value("use_regex", true))
        t_.pre_->add_split(translate_onig_pattern(kGpt2Pattern), fmt::format("{}: {} (GPT-2 regex)", file_, field));
      byte_level = true;
    } else {
      bad(field, fmt::format("pre-tokenizer type '{}' is not supported", type));
    }
  }

  int32_t parse_id(const json& v, const std::string& field) const {
    if (!v.is_number_integer()) bad(field, "id is not an integer");
    int64_t id = v.get<int64_t>();
    if (id < 0 || id >= kMaxId) bad(field, fmt::format("id {} out of range [0, {})", id, kMaxId));
    return static_cast<int32_t>(id);
  }

  void grow(int32_t id) {
    if (static_cast<size_t>(id) >= t_.bytes_.size()) {
      t_.bytes_.resize(id + 1);
      t_.flags_.resize(id + 1);
    }
  }

  // Raw bytes of a token written in byte-level form; a token with any character outside the
  // byte alphabet stands for its own UTF-8 (what the HF ByteLevel decoder does).
  std::string token_to_bytes(const std::string& text, bool* byte_level = nullptr) const {
    if (byte_level) *byte_level = false;
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      auto c = static_cast<unsigned char>(text[i]);
      uint32_t cp;
      int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      if (i + len > text.size()) return text;
      cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
      for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
      if (cp >= char_to_byte_.size() || char_to_byte_[cp] < 0) return text;
      out += static_cast<char>(char_to_byte_[cp]);
      i += len;
    }
    if (byte_level) *byte_level = true;
    return out;
  }

  void load_model(const json& m, const TokenizerJson& tj) {
    if (m.value("type", "BPE") != "BPE") bad("model.type", "only BPE is supported");
    if (!is_null_or(m, "dropout", nullptr) && !is_null_or(m, "dropout", 0.0)) bad("model.dropout", "not supported");
    if (!is_null_or(m, "continuing_subword_prefix", "")) bad("model.continuing_subword_prefix", "not supported");
    if (!is_null_or(m, "end_of_word_suffix", "")) bad("model.end_of_word_suffix", "not supported");
    if (!is_null_or(m, "byte_fallback", false)) bad("model.byte_fallback", "not supported");
    if (!tj.has_vocab) bad("model.vocab", "missing or not an object");
    if (!tj.has_merges) bad("model.merges", "missing or not an array");

    auto b2c = byte_to_char();
    char_to_byte_.assign(324, -1);
    for (int b = 0; b < 256; ++b) char_to_byte_[b2c[b]] = b;

    t_.ids_by_text_ = std::make_unique<StringIdMap>();
    StringIdMap& ids = *t_.ids_by_text_;
    ids.reserve(tj.vocab.size() + 1024);
    bool ignore_merges = m.value("ignore_merges", false);
    StringIdMap whole_words;
    for (const auto& [text, v] : tj.vocab) {
      if (v < 0 || v >= kMaxId) bad(fmt::format("model.vocab[\"{}\"]", text), fmt::format("id {} out of range [0, {})", v, kMaxId));
      auto id = static_cast<int32_t>(v);
      grow(id);
      if (t_.flags_[id] & Tokenizer::kHasToken) bad("model.vocab", fmt::format("id {} is used twice", id));
      t_.flags_[id] = Tokenizer::kHasToken;
      bool byte_level = false;
      t_.bytes_[id] = token_to_bytes(text, &byte_level);
      // HF looks words up in byte-level form, which only byte-level vocab entries can equal.
      if (ignore_merges && byte_level) whole_words.insert_or_assign(t_.bytes_[id], id);
      ids.insert_or_assign(text, id);
      if (id < 2) first_texts_[id] = text;
    }

    std::array<int32_t, 256> byte_ids{};
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      append_utf8(ch, b2c[b]);
      const int32_t* id = ids.find(ch);
      if (!id) bad("model.vocab", fmt::format("no token for byte 0x{:02x} ('{}')", b, ch));
      byte_ids[b] = *id;
    }
    t_.bpe_ = std::make_unique<BpeModel>(byte_ids);
    t_.bpe_->reserve(tj.merges.size());
    if (ignore_merges) t_.bpe_->set_whole_words(std::move(whole_words));
    std::string joined;
    for (size_t i = 0; i < tj.merges.size(); ++i) {
      const auto& [a, b] = tj.merges[i];
      joined = a;
      joined += b;
      const int32_t *ia = ids.find(a), *ib = ids.find(b), *ij = ids.find(joined);
      if (!ia || !ib || !ij)
        bad(fmt::format("model.merges[{}]", i), fmt::format("'{}' is not in the vocab", !ia ? a : !ib ? b : joined));
      t_.bpe_->add_merge(*ia, *ib, *ij);
    }
  }

  void load_added(const json& root) {
    t_.added_ = std::make_unique<AddedTokenMatcher>();
    auto added = root.find("added_tokens");
    if (added == root.end() || added->is_null()) return;
    if (!added->is_array()) bad("added_tokens", "not an array");
    for (size_t i = 0; i < added->size(); ++i) {
      const json& a = (*added)[i];
      std::string field = fmt::format("added_tokens[{}]", i);
      if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["content"].is_string())
        bad(field, "needs an integer id and a string content");
      int32_t id = parse_id(a["id"], field);
      std::string content = a["content"];
      if (content.empty()) bad(field, "content is empty");
      for (const char* flag : {"lstrip", "rstrip", "single_word"})
        if (!is_null_or(a, flag, false)) bad(field, fmt::format("{} is not supported", flag));
      grow(id);
      t_.flags_[id] = Tokenizer::kHasToken | (a.value("special", false) ? Tokenizer::kSpecial : 0);
      t_.bytes_[id] = token_to_bytes(content);
      t_.ids_by_text_->insert_or_assign(content, id);  // added tokens take precedence, as in HF
      t_.added_->add(content, id);
      if (id < 2) first_texts_[id] = content;
    }
  }

  // bos/eos from tokenizer_config.json ("bos_token": "<s>" or {"content": "<s>", ...}).
  void load_config(const json* config) {
    t_.bos_token_ = first_texts_[0];
    t_.eos_token_ = first_texts_[1];
    if (!config) return;
    if (!config->is_object()) fail("{}: top level is not an object", config_file_);
    auto pick = [&](const char* key, int32_t& id, std::string& text) {
      auto it = config->find(key);
      if (it == config->end() || it->is_null()) return;
      const json* c = &*it;
      if (c->is_object() && c->contains("content")) c = &(*c)["content"];
      if (!c->is_string()) fail("{}: {}: not a string or {{\"content\": ...}}", config_file_, key);
      text = c->get<std::string>();
      auto found = t_.token_id(text);
      if (!found) fail("{}: {}: '{}' is not a token of {}", config_file_, key, text, file_);
      id = *found;
    };
    pick("bos_token", t_.bos_id_, t_.bos_token_);
    pick("eos_token", t_.eos_id_, t_.eos_token_);
  }

 public:
  std::string config_file_;

 private:
  Tokenizer& t_;
  std::string file_;
  std::vector<int> char_to_byte_;
  std::string first_texts_[2];
};

bool Tokenizer::available(const std::string& dir) {
  std::error_code ec;
  fs::path p(dir);
  if (fs::is_regular_file(p, ec)) return true;
  return fs::is_regular_file(p / "tokenizer.json", ec);
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  fs::path p(path), file, dir;
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    dir = p;
    file = p / "tokenizer.json";
  } else {
    file = p;
    dir = p.parent_path();
  }
  if (!fs::is_regular_file(file, ec)) fail("{}: tokenizer.json not found", file.string());
  TokenizerJson root = read_tokenizer_json(file.string());
  fs::path config_path = dir / "tokenizer_config.json";
  json config;
  bool has_config = fs::is_regular_file(config_path, ec);
  if (has_config) config = parse_json(config_path);

  std::unique_ptr<Tokenizer> t(new Tokenizer());
  TokenizerLoader loader(*t, file.string());
  loader.config_file_ = config_path.string();
  loader.load(root, has_config ? &config : nullptr);
  log_debug("tokenizer: {} tokens, {} pre-tokenizer regexes from {}", t->size(), t->pre_->num_stages(), file.string());
  return t;
}

}  // namespace dsv3
