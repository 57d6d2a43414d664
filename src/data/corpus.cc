#include "data/corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "io/mapped_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// Progress on stderr: a live line on a terminal (5 per second), else a line every 10 s, so only
// large inputs print anything before the summary.
class Progress {
 public:
  Progress(uint64_t total, int mode)
      : total_(total),
        live_(mode == 1 || (mode < 0 && ::isatty(STDERR_FILENO))),
        on_(mode != 0 && log_level() >= LogLevel::kInfo) {}
  void update(uint64_t done, int64_t docs, int64_t tokens) {
    if (!on_) return;
    const auto now = Clock::now();
    if (now - last_ < (live_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(10000))) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    const double rate = s > 0 ? static_cast<double>(done) / s : 0;
    const double eta = rate > 0 && total_ > done ? static_cast<double>(total_ - done) / rate : 0;
    fmt::print(stderr, "{}data: {:.1f}/{:.1f} MB ({:.0f}%)  {:.1f} MB/s  ETA {}:{:02d}  {} docs  {:.2f}M tokens{}",
               live_ ? "\r" : "", static_cast<double>(done) / 1e6, static_cast<double>(total_) / 1e6,
               total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0, rate / 1e6,
               static_cast<int>(eta) / 60, static_cast<int>(eta) % 60, docs, static_cast<double>(tokens) / 1e6,
               live_ ? "   " : "\n");
    std::fflush(stderr);
    printed_ = true;
  }
  void finish() {
    if (on_ && live_ && printed_) fmt::print(stderr, "\n");
    printed_ = false;
  }

 private:
  uint64_t total_;
  bool live_, on_, printed_ = false;
  Clock::time_point start_ = Clock::now(), last_ = Clock::now();
};

// Sizes of the inputs, checked before anything is written.
uint64_t input_size(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) fail("{}: not found", path);
  if (!fs::is_regular_file(st)) fail("{}: not a regular file", path);
  const uintmax_t n = fs::file_size(path, ec);
  if (ec) fail("{}: cannot read its size: {}", path, ec.message());
  return n;
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); });
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string absolute(const std::string& p) {
  std::error_code ec;
  const fs::path a = fs::weakly_canonical(p, ec);
  return ec ? p : a.string();
}

// One JSON line of an ids file -> ids; errors name the file and line.
void parse_id_line(const std::string& line, const std::string& where, std::vector<int32_t>& ids) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
  if (!j.is_array()) fail("{}: expected a JSON list of token ids", where);
  ids.clear();
  ids.reserve(j.size());
  for (size_t k = 0; k < j.size(); ++k) {
    const auto& v = j[k];
    if (!v.is_number_integer()) fail("{}: element {} is not an integer: {}", where, k, v.dump());
    if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX)
                               : v.get<int64_t>() > INT32_MAX)
      fail("{}: element {}: token id {} is out of range", where, k, v.dump());
    if (!v.is_number_unsigned() && v.get<int64_t>() < 0) fail("{}: element {}: token id {} is negative", where, k, v.dump());
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
}

template <typename F>
void for_each_line(const std::string& path, F&& fn) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) fn(line, n);
  if (f.bad()) fail("{}: read error", path);
}

// Runs writer.add, naming `where` in its error.
void add_doc(TokenDataWriter& w, std::span<const int32_t> ids, const std::string& where) {
  try {
    w.add(ids);
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
}

}  // namespace

std::vector<std::string_view> split_paragraphs(std::string_view text) {
  std::vector<std::string_view> out;
  size_t pos = 0, start = std::string_view::npos, end = 0;  // current paragraph [start, end)
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const size_t line_end = nl == std::string_view::npos ? text.size() : nl;
    if (is_blank(text.substr(pos, line_end - pos))) {
      if (start != std::string_view::npos) out.push_back(text.substr(start, end - start));
      start = std::string_view::npos;
    } else {
      if (start == std::string_view::npos) start = pos;
      end = line_end > pos && text[line_end - 1] == '\r' ? line_end - 1 : line_end;  // CRLF files
    }
    pos = line_end + 1;
  }
  if (start != std::string_view::npos) out.push_back(text.substr(start, end - start));
  return out;
}

SpecialIds resolve_special_ids(const std::string& tokenizer_path, const Tokenizer& tok) {
  std::error_code ec;
  const fs::path dir = fs::is_directory(tokenizer_path, ec) ? fs::path(tokenizer_path) : fs::path(tokenizer_path).parent_path();
  SpecialIds s{tok.bos_id(), tok.eos_id()};
  if (fs::is_regular_file(dir / "tokenizer_config.json", ec)) return s;  // the tokenizer read it
  const fs::path config = dir / "config.json";
  if (!fs::is_regular_file(config, ec)) return s;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(config.string()));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", config.string(), e.what());
  }
  if (!j.is_object()) return s;
  auto pick = [&](const char* key, int32_t& id) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return;
    const nlohmann::json* v = &*it;
    if (v->is_array() && !v->empty()) v = &(*v)[0];  // eos_token_id may be a list
    if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > INT32_MAX)
      fail("{}: field \"{}\": expected a non-negative token id", config.string(), key);
    id = static_cast<int32_t>(v->get<int64_t>());
  };
  pick("bos_token_id", s.bos);
  pick("eos_token_id", s.eos);
  return s;
}

CorpusSummary build_token_data(const CorpusOptions& o) {
  const bool ids_mode = !o.ids_file.empty();
  if (ids_mode && !o.files.empty()) fail("--ids takes one ids file; text FILES cannot be given with it");
  if (ids_mode && !o.tokenizer.empty()) fail("--ids takes token ids: no tokenizer (-m) is used with it");
  if (!ids_mode && o.files.empty()) fail("no input: give --ids FILE.jsonl, or -m TOKENIZER_DIR and text FILES");
  if (!ids_mode && o.tokenizer.empty()) fail("text FILES need a tokenizer: -m MODEL_OR_TOKENIZER_DIR");
  if (o.out.empty()) fail("--out DIR is required");

  CorpusSummary sum;
  const std::vector<std::string> inputs = ids_mode ? std::vector<std::string>{o.ids_file} : o.files;
  for (const auto& f : inputs) sum.input_bytes += input_size(f);
  // Loaded before OUT is touched, so a bad tokenizer leaves nothing behind.
  std::unique_ptr<Tokenizer> tok;
  SpecialIds sp;
  if (!ids_mode) {
    tok = Tokenizer::load(o.tokenizer);
    sp = resolve_special_ids(o.tokenizer, *tok);
  }

  TokenDataWriter::Options wo;
  wo.val_fraction = o.val_fraction;
  wo.seed = o.seed;
  wo.vocab_size = o.vocab_size;
  wo.force = o.force;
  TokenDataWriter w(o.out, wo);
  Progress progress(sum.input_bytes, o.progress);
  const auto t0 = Clock::now();
  uint64_t done = 0;
  std::vector<int32_t> ids;
  nlohmann::ordered_json source;
  source["mode"] = ids_mode ? "ids" : "text";
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : inputs) files.push_back(absolute(f));
  source["files"] = files;

  if (ids_mode) {
    for_each_line(o.ids_file, [&](const std::string& line, int64_t n) {
      done += line.size() + 1;
      if (is_blank(line)) return;
      const std::string where = fmt::format("{} line {}", o.ids_file, n);
      parse_id_line(line, where, ids);
      if (ids.empty()) ++sum.skipped_empty;
      add_doc(w, ids, where);
      progress.update(done, w.docs(), w.tokens());
    });
  } else {
    std::string first_invalid;
    // One document: BOS + ids of the text (added-token text is not matched: the corpus is data,
    // not markup) + EOS.
    auto add_text = [&](std::string_view text, const std::string& where) {
      if (text.empty()) {
        ++sum.skipped_empty;
        return;
      }
      std::string fixed;
      if (utf8_first_invalid(text) != std::string_view::npos) {
        fixed = utf8_sanitize(text);
        text = fixed;
        if (sum.invalid_utf8++ == 0) first_invalid = where;
      }
      ids.clear();
      if (o.bos) ids.push_back(sp.bos);
      try {
        tok->encode_into(text, ids, /*match_special=*/o.special);
      } catch (const Error& e) {
        fail("{}: {}", where, e.what());
      }
      if (o.eos) ids.push_back(sp.eos);
      add_doc(w, ids, where);
    };
    for (const auto& path : o.files) {
      if (ends_with(path, ".jsonl")) {
        for_each_line(path, [&](const std::string& line, int64_t n) {
          done += line.size() + 1;
          if (is_blank(line)) return;
          const std::string where = fmt::format("{} line {}", path, n);
          nlohmann::json j;
          try {
            j = nlohmann::json::parse(line);
          } catch (const nlohmann::json::exception& e) {
            fail("{}: not valid JSON: {}", where, e.what());
          }
          if (!j.is_object()) fail("{}: expected a JSON object with a \"text\" field", where);
          auto it = j.find("text");
          if (it == j.end() || !it->is_string()) fail("{}: field \"text\": missing or not a string", where);
          add_text(it->get_ref<const std::string&>(), where);
          progress.update(done, w.docs(), w.tokens());
        });
        continue;
      }
      const MappedFile file(path);
      const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
      if (o.split_blank_lines) {
        size_t released = 0;
        for (std::string_view para : split_paragraphs(text)) {
          add_text(para, path);
          // Pages of finished paragraphs leave the resident set (every 64 MiB, not per paragraph:
          // madvise is a system call), so a huge file never fills RAM.
          const size_t upto = static_cast<size_t>(para.data() + para.size() - text.data());
          if (upto - released >= (size_t{64} << 20)) {
            file.release(file.data(), upto);
            released = upto;
          }
          progress.update(done + upto, w.docs(), w.tokens());
        }
      } else {
        add_text(text, path);
      }
      done += file.size();
      progress.update(done, w.docs(), w.tokens());
    }
    progress.finish();  // end the live line before the warning
    if (sum.invalid_utf8)
      log_warn("{} document(s) had invalid UTF-8, replaced by U+FFFD (the first: {})", sum.invalid_utf8, first_invalid);
    source["split_blank_lines"] = o.split_blank_lines;
    source["bos_id"] = o.bos ? nlohmann::json(sp.bos) : nlohmann::json(nullptr);
    source["eos_id"] = o.eos ? nlohmann::json(sp.eos) : nlohmann::json(nullptr);
  }
  progress.finish();  // idempotent
  source["val_fraction"] = o.val_fraction;
  source["seed"] = o.seed;
  int64_t floor = 0;
  if (tok) floor = std::max<int64_t>({static_cast<int64_t>(tok->size()), int64_t{sp.bos} + 1, int64_t{sp.eos} + 1});
  sum.data = w.finish(source, ids_mode ? nlohmann::json(nullptr) : nlohmann::json(absolute(o.tokenizer)), floor);
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return sum;
}

}  // namespace dsv3
