// `dsv3 tokenize` / `dsv3 detokenize`: text <-> ids with the checkpoint's tokenizer.json, one JSON
// value per line with --jsonl (what the JS parity test and scripts use).
#include <fmt/format.h>

#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  bool jsonl = false, no_special = false, skip_special = false;
  std::vector<std::string> text;
};

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += ']';
  return out;
}

std::string read_all_stdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), {});
}

int run_tokenize(const TokenizeOptions& o) {
  auto tok = Tokenizer::load(o.model);
  bool special = !o.no_special;
  if (!o.jsonl) {
    std::string text;
    if (!o.text.empty()) {
      for (size_t i = 0; i < o.text.size(); ++i) text += (i ? " " : "") + o.text[i];
    } else {
      text = read_all_stdin();
    }
    fmt::print("{}\n", ids_json(tok->encode(text, special)));
    return 0;
  }
  std::ios::sync_with_stdio(false);
  std::string line, out;
  std::vector<int32_t> ids;
  for (size_t n = 1; std::getline(std::cin, line); ++n) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("stdin line {}: not valid JSON: {}", n, e.what());
    }
    if (!j.is_string()) fail("stdin line {}: expected a JSON string", n);
    ids.clear();
    try {
      tok->encode_into(j.get_ref<const std::string&>(), ids, special);
    } catch (const Error& e) {
      fail("stdin line {}: {}", n, e.what());
    }
    out += ids_json(ids);
    out += '\n';
    if (out.size() > (1 << 16)) {
      fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

std::vector<int32_t> parse_ids(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
  if (!j.is_array()) fail("{}: expected a JSON array of ids", where);
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (const auto& v : j) {
    if (!v.is_number_integer()) fail("{}: ids must be integers", where);
    int64_t id = v.get<int64_t>();
    if (id < INT32_MIN || id > INT32_MAX) fail("{}: token id {} is out of range", where, id);
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

int run_detokenize(const TokenizeOptions& o) {
  auto tok = Tokenizer::load(o.model);
  if (!o.jsonl) {
    std::string text = tok->decode(parse_ids(read_all_stdin(), "stdin"), o.skip_special);
    fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  std::ios::sync_with_stdio(false);
  std::string line;
  for (size_t n = 1; std::getline(std::cin, line); ++n) {
    std::string where = fmt::format("stdin line {}", n);
    std::string text;
    try {
      text = tok->decode(parse_ids(line, where), o.skip_special);
    } catch (const Error& e) {
      if (std::string_view(e.what()).starts_with(where)) throw;
      fail("{}: {}", where, e.what());
    }
    fmt::print("{}\n", nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return 0;
}

const bool kTokenize = register_command(
    {"tokenize", "Text to token ids (JSON array; --jsonl: one JSON string per stdin line)", [](CLI::App& app) {
       auto o = std::make_shared<TokenizeOptions>();
       app.add_option("-m,--model", o->model, "Folder with tokenizer.json (or the file itself)")->required();
       app.add_flag("--jsonl", o->jsonl, "Each stdin line is a JSON string; prints one id array per line");
       app.add_flag("--no-special", o->no_special, "Treat added/special token text as plain text");
       app.add_option("text", o->text, "Text to encode (default: all of stdin)");
       return [o] { return run_tokenize(*o); };
     }});

const bool kDetokenize = register_command(
    {"detokenize", "Token ids (JSON array on stdin) to text; --jsonl: one array per line -> JSON string",
     [](CLI::App& app) {
       auto o = std::make_shared<TokenizeOptions>();
       app.add_option("-m,--model", o->model, "Folder with tokenizer.json (or the file itself)")->required();
       app.add_flag("--jsonl", o->jsonl, "Each stdin line is a JSON array of ids; prints one JSON string per line");
       app.add_flag("--skip-special", o->skip_special, "Drop special tokens (BOS, EOS, ...)");
       return [o] { return run_detokenize(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
