// Word counting and the merge loop of the BPE trainer; the output files are in
// bpe_trainer_files.cc.
#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/deepseek_v3.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

constexpr int64_t kLeading = deepseek_v3::kLeadingTokens.size();
constexpr int64_t kTrailing = deepseek_v3::kTrailingTokens.size();
constexpr int64_t kMaxVocab = 1 << 24;  // the loader's id limit

struct StringHash {
  using is_transparent = void;  // lets find() take a string_view without building a string
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using WordMap = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

// Unicode White_Space (what \s means in the patterns once translate_onig_pattern spells it out).
bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// True when a complete, non-White_Space character starts at s[p].
bool non_space_at(std::string_view s, size_t p) {
  auto c = static_cast<unsigned char>(s[p]);
  if (c < 0x80) return !is_white_space(c);
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if (len == 1 || p + len > s.size()) return false;
  uint32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[p + k]) & 0x3F);
  return !is_white_space(cp);
}

// Where a long text may be cut into separately pre-tokenized chunks without changing any piece:
// right after a '\n' that is followed by a non-White_Space character. No piece of any of the
// three DeepSeek-V3 regexes runs from a newline into a following non-space character (newlines
// only end pieces: "\s*[\r\n]+", " ?[\p{P}\p{S}]+[\r\n]*", whitespace runs), digit and CJK runs
// start at that character either way, and no gap between matches crosses the matched newline.
// Returns the last such offset in s, or 0 when there is none.
size_t safe_cut(std::string_view s) {
  for (size_t end = s.size(); end > 0;) {
    size_t nl = s.rfind('\n', end - 1);
    if (nl == std::string_view::npos) return 0;
    if (nl + 1 < s.size() && non_space_at(s, nl + 1)) return nl + 1;
    end = nl;
  }
  return 0;
}

// A text without a safe cut for this long (one huge line) is cut at the last newline, or failing
// that at a character boundary: at worst a word or two at the cut are counted in two parts.
size_t fallback_cut(std::string_view s) {
  size_t nl = s.rfind('\n');
  if (nl != std::string_view::npos && nl > 0) return nl + 1;
  size_t p = s.size() - 1;  // before the lead byte of the last (maybe incomplete) character
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  return p > 0 ? p : s.size();
}

// Pre-tokenizes texts into words with the DeepSeek-V3 pre-tokenizer, cutting out added tokens
// first exactly as Tokenizer::encode does. Shared by all counting threads (PreTokenizer and
// AddedTokenMatcher are safe to use concurrently).
class WordCounter {
 public:
  WordCounter() {
    for (size_t i = 0; i < deepseek_v3::kSplitPatterns.size(); ++i)
      pre_.add_split(translate_onig_pattern(deepseek_v3::kSplitPatterns[i]),
                     fmt::format("DeepSeek-V3 pre-tokenizer regex {}", i));
    int32_t id = 0;
    for (const auto& t : deepseek_v3::kLeadingTokens) added_.add(t.content, id++);
    for (const auto& t : deepseek_v3::kTrailingTokens) added_.add(t.content, id++);
  }

  // Returns false when `text` had invalid UTF-8 (replaced by U+FFFD before counting).
  bool count(std::string_view text, WordMap& words) const {
    std::string fixed;
    bool valid = utf8_first_invalid(text) == std::string_view::npos;
    if (!valid) {
      fixed = utf8_sanitize(text);
      text = fixed;
    }
    auto plain = [&](std::string_view segment) {
      pre_.split(segment, [&](std::string_view word) {
        auto it = words.find(word);
        if (it == words.end())
          words.emplace(std::string(word), 1);
        else
          ++it->second;
      });
    };
    size_t pos = 0, start = 0, len = 0;
    int32_t id = 0;
    while (added_.find(text, pos, start, len, id)) {
      plain(text.substr(pos, start - pos));
      pos = start + len;
    }
    plain(text.substr(pos));
    return valid;
  }

 private:
  PreTokenizer pre_;
  AddedTokenMatcher added_;
};

void merge_into(WordMap& into, WordMap&& from) {
  if (into.empty()) {
    into = std::move(from);
    return;
  }
  while (!from.empty()) {
    auto node = from.extract(from.begin());  // moves the key instead of copying it
    auto r = into.insert(std::move(node));
    if (!r.inserted) r.position->second += r.node.mapped();
  }
}

// Progress lines at most every 2 s.
class Progress {
 public:
  explicit Progress(bool on) : on_(on) {}
  template <class... Args>
  void maybe(fmt::format_string<Args...> f, Args&&... args) {
    if (!on_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    log_info(f, std::forward<Args>(args)...);
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// One heap entry: a pair, its count when pushed, and the words it was seen in. As in HF, an
// entry whose count is stale is re-pushed with the current count when it reaches the top.
struct Entry {
  int64_t count;
  uint64_t pair;
  std::vector<uint32_t> words;  // ascending word indices (may include words that lost the pair)
};
// Max-heap order: higher count first, then the smaller (left id, right id) pair - HF's Merge Ord.
bool heap_less(const Entry& x, const Entry& y) {
  return x.count != y.count ? x.count < y.count : x.pair > y.pair;
}

}  // namespace

struct BpeTrainer::Counts {
  WordCounter counter;
  WordMap words;
  uint64_t bytes = 0;
  size_t invalid_texts = 0;
};

int64_t TrainedBpe::total_size() const { return static_cast<int64_t>(tokens.size()) + kTrailing; }

int64_t BpeTrainer::min_vocab_size() { return kLeading + 256 + kTrailing; }

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : o_(options), counts_(std::make_unique<Counts>()) {
  if (o_.vocab_size < min_vocab_size())
    fail("vocab size {} is too small: it must be at least {} (256 byte symbols and {} special/added tokens)",
         o_.vocab_size, min_vocab_size(), kLeading + kTrailing);
  if (o_.vocab_size > kMaxVocab) fail("vocab size {} is too large (at most {})", o_.vocab_size, kMaxVocab);
  if (o_.min_frequency < 0) fail("min frequency must not be negative");
  o_.threads = std::max(1, o_.threads);
}

BpeTrainer::~BpeTrainer() = default;

uint64_t BpeTrainer::bytes_seen() const { return counts_->bytes; }
size_t BpeTrainer::distinct_words() const { return counts_->words.size(); }

void BpeTrainer::add_text(std::string_view text) {
  counts_->bytes += text.size();
  if (!counts_->counter.count(text, counts_->words)) ++counts_->invalid_texts;
}

void BpeTrainer::add_files(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {  // fail before spending time on the others
    std::ifstream f(p, std::ios::binary);
    if (!f) fail("{}: cannot open", p);
  }
  constexpr size_t kBlock = 1 << 20, kChunk = 4 << 20, kMaxChunk = 64 << 20;
  auto t0 = std::chrono::steady_clock::now();
  Progress progress(o_.progress);
  Counts& c = *counts_;

  // Chunks go to o_.threads workers through a bounded queue; each worker counts into its own map
  // and the maps are summed at the end (word order does not affect the result: train() sorts).
  std::mutex mu;
  std::condition_variable cv_work, cv_room;
  std::deque<std::string> queue;
  bool done = false;
  std::vector<WordMap> maps(o_.threads);
  std::vector<size_t> invalid(o_.threads, 0);
  std::exception_ptr error;
  auto worker = [&](int w) {
    try {
      for (;;) {
        std::string chunk;
        {
          std::unique_lock lock(mu);
          cv_work.wait(lock, [&] { return done || !queue.empty(); });
          if (queue.empty()) return;
          chunk = std::move(queue.front());
          queue.pop_front();
        }
        cv_room.notify_one();
        if (!c.counter.count(chunk, maps[w])) ++invalid[w];
      }
    } catch (...) {
      std::lock_guard lock(mu);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  if (o_.threads > 1)
    for (int w = 0; w < o_.threads; ++w) threads.emplace_back(worker, w);
  auto dispatch = [&](std::string chunk) {
    if (o_.threads == 1) {
      if (!c.counter.count(chunk, maps[0])) ++invalid[0];
      return;
    }
    std::unique_lock lock(mu);
    cv_room.wait(lock, [&] { return queue.size() < size_t(2 * o_.threads); });
    queue.push_back(std::move(chunk));
    cv_work.notify_one();
  };
  auto finish = [&] {
    {
      std::lock_guard lock(mu);
      done = true;
    }
    cv_work.notify_all();
    for (auto& t : threads) t.join();
    threads.clear();
  };

  try {
    std::string buf;
    std::vector<char> block(kBlock);
    for (size_t fi = 0; fi < paths.size(); ++fi) {
      std::ifstream f(paths[fi], std::ios::binary);
      if (!f) fail("{}: cannot open", paths[fi]);
      for (;;) {
        f.read(block.data(), block.size());
        size_t got = static_cast<size_t>(f.gcount());
        if (got == 0) break;
        buf.append(block.data(), got);
        c.bytes += got;
        if (buf.size() >= kChunk) {
          size_t cut = safe_cut(buf);
          if (cut == 0 && buf.size() >= kMaxChunk) cut = fallback_cut(buf);
          if (cut > 0) {
            dispatch(buf.substr(0, cut));
            buf.erase(0, cut);
          }
        }
        progress.maybe("tokenizer train: read {:.1f} MB (file {} of {})", c.bytes / 1e6, fi + 1, paths.size());
      }
      if (f.bad()) fail("{}: read error", paths[fi]);
      if (!buf.empty()) dispatch(std::move(buf));  // the end of a file ends its text
      buf.clear();
    }
  } catch (...) {
    finish();
    throw;
  }
  finish();
  if (error) std::rethrow_exception(error);
  for (int w = 0; w < o_.threads; ++w) {
    merge_into(c.words, std::move(maps[w]));
    c.invalid_texts += invalid[w];
  }
  if (c.invalid_texts)
    log_warn("tokenizer train: {} chunk(s) of the input had invalid UTF-8 (counted as U+FFFD)", c.invalid_texts);
  if (o_.progress)
    log_info("tokenizer train: read {:.1f} MB from {} file(s), {} distinct words in {:.1f} s", c.bytes / 1e6,
             paths.size(), c.words.size(), seconds_since(t0));
}

TrainedBpe BpeTrainer::train() {
  auto t0 = std::chrono::steady_clock::now();
  TrainedBpe out;
  const int64_t target = o_.vocab_size - kTrailing;  // model.vocab entries wanted
  for (const auto& t : deepseek_v3::kLeadingTokens) out.tokens.emplace_back(t.content);

  // Byte symbols in the code-point order of their byte-level characters (HF's alphabet order).
  std::array<uint32_t, 256> b2c = byte_to_char();
  std::array<int, 256> by_char;
  for (int b = 0; b < 256; ++b) by_char[b] = b;
  std::sort(by_char.begin(), by_char.end(), [&](int x, int y) { return b2c[x] < b2c[y]; });
  std::array<int32_t, 256> byte_id{};
  std::unordered_map<std::string, int32_t> id_of;  // raw bytes -> id, for ids >= kLeading
  for (int b : by_char) {
    byte_id[b] = static_cast<int32_t>(out.tokens.size());
    id_of.emplace(std::string(1, char(b)), byte_id[b]);
    out.tokens.emplace_back(1, char(b));
  }

  // Words sorted by their bytes, so the result does not depend on hash or thread order; each is
  // a run of symbol ids in one flat array, shortened in place as pairs merge.
  std::vector<std::pair<std::string, int64_t>> list;
  list.reserve(counts_->words.size());
  while (!counts_->words.empty()) {
    auto node = counts_->words.extract(counts_->words.begin());
    list.emplace_back(std::move(node.key()), node.mapped());
  }
  std::sort(list.begin(), list.end());
  size_t total_syms = 0;
  for (const auto& [w, n] : list) total_syms += w.size();
  std::vector<int32_t> syms;
  syms.reserve(total_syms);
  std::vector<uint64_t> start(list.size());
  std::vector<uint32_t> len(list.size());
  std::vector<int64_t> count(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    start[i] = syms.size();
    len[i] = static_cast<uint32_t>(list[i].first.size());
    count[i] = list[i].second;
    for (char ch : list[i].first) syms.push_back(byte_id[static_cast<uint8_t>(ch)]);
  }
  list.clear();
  list.shrink_to_fit();

  // Initial pair counts (every adjacent occurrence, as HF counts them) and the words of each pair.
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::vector<Entry> heap;
  {
    std::vector<std::pair<uint64_t, uint32_t>> occ;  // (pair, word), sorted to group by pair
    occ.reserve(total_syms);
    for (size_t i = 0; i < start.size(); ++i)
      for (uint32_t k = 0; k + 1 < len[i]; ++k)
        occ.emplace_back(pair_key(syms[start[i] + k], syms[start[i] + k + 1]), static_cast<uint32_t>(i));
    std::sort(occ.begin(), occ.end());
    pair_count.reserve(occ.size() / 4 + 16);
    for (size_t k = 0; k < occ.size();) {
      Entry e{0, occ[k].first, {}};
      for (; k < occ.size() && occ[k].first == e.pair; ++k) {
        e.count += count[occ[k].second];
        if (e.words.empty() || e.words.back() != occ[k].second) e.words.push_back(occ[k].second);
      }
      pair_count[e.pair] = e.count;
      if (e.count > 0) heap.push_back(std::move(e));
    }
  }
  std::make_heap(heap.begin(), heap.end(), heap_less);

  Progress progress(o_.progress);
  std::unordered_map<uint64_t, std::vector<uint32_t>> new_pairs;  // pair -> words, one merge's worth
  std::vector<uint64_t> new_keys;
  int64_t best_count = 0;
  auto change = [&](int32_t a, int32_t b, int delta, uint32_t word) {
    uint64_t k = pair_key(a, b);
    pair_count[k] += delta * count[word];
    if (delta > 0) {
      auto& ws = new_pairs[k];
      if (ws.empty() || ws.back() != word) ws.push_back(word);
    }
  };

  while (static_cast<int64_t>(out.tokens.size()) < target && !heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), heap_less);
    Entry top = std::move(heap.back());
    heap.pop_back();
    int64_t now = pair_count[top.pair];
    if (top.count != now) {  // stale: its words merged other pairs since it was pushed
      if (now > 0) {
        top.count = now;
        heap.push_back(std::move(top));
        std::push_heap(heap.begin(), heap.end(), heap_less);
      }
      continue;
    }
    if (top.count < 1 || top.count < o_.min_frequency) break;
    best_count = top.count;
    auto a = static_cast<int32_t>(top.pair >> 32), b = static_cast<int32_t>(top.pair & 0xFFFFFFFFu);
    // A token spelled like an existing one (reached through another split) reuses its id; the
    // merge is still recorded, as HF does.
    std::string merged = out.tokens[a] + out.tokens[b];
    auto [it, fresh] = id_of.emplace(merged, static_cast<int32_t>(out.tokens.size()));
    int32_t id = it->second;
    if (fresh) out.tokens.push_back(std::move(merged));
    out.merges.emplace_back(a, b);

    // Replace every (a, b) in the words, left to right (HF's Word::merge, including its counting
    // of overlapping pairs such as (a, a) in "aaa"): the neighbours' pairs move to the new id.
    new_pairs.clear();
    for (uint32_t w : top.words) {
      int32_t* s = syms.data() + start[w];
      uint32_t n = len[w], r = 0, wr = 0;
      while (r < n) {
        if (r + 1 < n && s[r] == a && s[r + 1] == b) {
          if (wr > 0) {
            change(s[wr - 1], a, -1, w);
            change(s[wr - 1], id, +1, w);
          }
          if (r + 2 < n) {
            change(b, s[r + 2], -1, w);
            change(id, s[r + 2], +1, w);
          }
          s[wr++] = id;
          r += 2;
        } else {
          s[wr++] = s[r++];
        }
      }
      len[w] = wr;
    }
    new_keys.clear();
    for (const auto& kv : new_pairs) new_keys.push_back(kv.first);
    std::sort(new_keys.begin(), new_keys.end());  // push order independent of hashing
    for (uint64_t k : new_keys) {
      int64_t n = pair_count[k];
      if (n <= 0) continue;
      heap.push_back(Entry{n, k, std::move(new_pairs[k])});
      std::push_heap(heap.begin(), heap.end(), heap_less);
    }
    progress.maybe("tokenizer train: {} merges, vocab {} of {} (last pair count {})", out.merges.size(),
                   out.tokens.size() + kTrailing, o_.vocab_size, best_count);
  }

  if (out.total_size() < o_.vocab_size)
    log_warn("tokenizer train: the text ran out of pairs{} after {} merges: vocab size is {}, not {}",
             o_.min_frequency > 1 ? fmt::format(" occurring at least {} times", o_.min_frequency) : "",
             out.merges.size(), out.total_size(), o_.vocab_size);
  if (o_.progress)
    log_info("tokenizer train: {} merges, vocab size {} (last merged pair occurred {} times) in {:.1f} s",
             out.merges.size(), out.total_size(), best_count, seconds_since(t0));
  return out;
}

}  // namespace dsv3
