#include "tokenizer/tokenizer_json.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;

// SAX handler: forwards every event to nlohmann's DOM builder except those inside
// root.model.vocab and root.model.merges, which it collects itself.
class Reader {
 public:
  explicit Reader(TokenizerJson& out) : out_(out), dom_(out.rest, false) {}
  std::string error;

  bool null() { return in_special() ? bad_value("null") : dom_.null(); }
  bool boolean(bool v) { return in_special() ? bad_value("a boolean") : dom_.boolean(v); }
  bool number_integer(int64_t v) { return in_vocab() ? vocab_id(v) : in_merges() ? bad_value("a number") : dom_.number_integer(v); }
  bool number_unsigned(uint64_t v) {
    if (in_vocab()) return vocab_id(v > uint64_t(INT64_MAX) ? -1 : int64_t(v));
    return in_merges() ? bad_value("a number") : dom_.number_unsigned(v);
  }
  bool number_float(double v, const std::string& s) { return in_special() ? bad_value("a float") : dom_.number_float(v, s); }
  bool string(std::string& s) {
    if (in_vocab()) return bad_value("a string");
    if (in_merges()) {
      if (pair_depth_) {
        pair_.push_back(std::move(s));
        return true;
      }
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return fail_at(fmt::format("model.merges[{}]: '{}' is not two tokens separated by one space", out_.merges.size(), s));
      out_.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    return dom_.string(s);
  }
  bool binary(json::binary_t& b) { return dom_.binary(b); }
  bool key(std::string& k) {
    last_key_ = k;
    return in_vocab() ? true : dom_.key(k);
  }
  bool start_object(size_t n) {
    if (in_special()) return bad_value("an object");
    open(true);
    if (in_vocab()) out_.has_vocab = true;
    return dom_.start_object(n);
  }
  bool end_object() {
    path_.pop_back();
    return dom_.end_object();
  }
  bool start_array(size_t n) {
    if (in_vocab()) return bad_value("an array");
    if (in_merges()) {
      if (pair_depth_) return bad_value("a nested array");
      pair_depth_ = true;
      pair_.clear();
      return true;
    }
    open(false);
    if (in_merges()) out_.has_merges = true;
    return dom_.start_array(n);
  }
  bool end_array() {
    if (pair_depth_) {
      pair_depth_ = false;
      if (pair_.size() != 2)
        return fail_at(fmt::format("model.merges[{}]: neither \"a b\" nor [\"a\", \"b\"]", out_.merges.size()));
      out_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      return true;
    }
    path_.pop_back();
    return dom_.end_array();
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    if (error.empty()) error = fmt::format("not valid JSON: {}", e.what());
    return false;
  }

 private:
  // Containers from the root down: the key each one sits under ("" inside arrays).
  void open(bool object) {
    bool parent_is_object = !path_.empty() && path_.back().second;
    path_.emplace_back(parent_is_object ? last_key_ : std::string(), object);
  }
  bool at(const char* field, bool object) const {
    return path_.size() == 3 && path_[1].first == "model" && path_[1].second && path_[2].first == field &&
           path_[2].second == object;
  }
  bool in_vocab() const { return at("vocab", true); }
  bool in_merges() const { return at("merges", false); }
  bool in_special() const { return in_vocab() || in_merges(); }

  bool vocab_id(int64_t v) {
    out_.vocab.emplace_back(last_key_, v);
    return true;
  }
  bool bad_value(const char* what) {
    if (in_vocab()) return fail_at(fmt::format("model.vocab[\"{}\"]: id is {}, not an integer", last_key_, what));
    return fail_at(fmt::format("model.merges[{}]: {} is neither \"a b\" nor [\"a\", \"b\"]", out_.merges.size(), what));
  }
  bool fail_at(std::string msg) {
    error = std::move(msg);
    return false;
  }

  TokenizerJson& out_;
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<std::pair<std::string, bool>> path_;  // (key, is_object)
  std::string last_key_;
  bool pair_depth_ = false;
  std::vector<std::string> pair_;
};

}  // namespace

TokenizerJson read_tokenizer_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  TokenizerJson out;
  out.vocab.reserve(1 << 17);
  out.merges.reserve(1 << 17);
  Reader reader(out);
  if (!json::sax_parse(text, &reader) || !reader.error.empty())
    fail("{}: {}", path, reader.error.empty() ? "not valid JSON" : reader.error);
  return out;
}

}  // namespace dsv3
